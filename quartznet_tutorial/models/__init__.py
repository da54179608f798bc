"""The networks. :mod:`.variants` holds the one table of QuartzNet variants, :mod:`.quartznet`
the model, :mod:`.classifier` waveforms-to-labels; :mod:`.families` registers every model
family. A new family is one module here with a config dataclass and an ``nn.Module`` taking
``(features, lengths)`` to logits.
"""
