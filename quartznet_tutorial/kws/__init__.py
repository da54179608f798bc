"""Keyword spotting in long recordings: the streaming detector, its scoring against the truth
and the test streams it is scored on.
"""
