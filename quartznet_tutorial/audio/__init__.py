"""Audio in: reading and writing clips (:mod:`.file_io`), the MFCC front end (:mod:`.features`)
and the training augmentation (:mod:`.augment`).
"""
