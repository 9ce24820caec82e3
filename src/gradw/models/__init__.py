"""The models: speaker networks E behind one interface (:mod:`gradw.models.speaker`), CAM++ and
ResNet implementations, the mask U-Net G (:mod:`gradw.models.unet`), and every checkpoint reader
(:mod:`gradw.models.loading`)."""
