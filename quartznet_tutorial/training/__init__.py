"""Training: the config, data, optimiser, resumable runs, transfer between label sets, the
loop and fine-tuning.
"""
