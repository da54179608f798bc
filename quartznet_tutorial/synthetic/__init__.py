"""Generated speech. :mod:`.speakers` holds what every text-to-speech engine shares (speakers,
microphone and room, the speaker split, the folder layout, the worker pool); each engine is
one module (:mod:`.espeak`, :mod:`.piper`).
"""
