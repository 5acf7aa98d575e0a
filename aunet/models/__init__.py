"""Neural networks: ConvBlock, Hourglass, FAN, AU-Net, the transfer strategies and ResNet-18."""
