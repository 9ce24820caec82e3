"""Enhancement with a trained G: the mel mask mapped onto the STFT (:mod:`~gradw.enhance.dsp`), long
recordings in chunks (:mod:`~gradw.enhance.chunks`), the :class:`~gradw.enhance.enhancer.Enhancer`,
and folders in, folders out (:mod:`~gradw.enhance.files`)."""
