"""Neural building blocks shared by several lobes: the attention kernel, the encoder layer
stack, the convolutional positional embedding, lengths and masks, activations, weight
initialisation, dropout, pooling, losses and schedulers. Import the submodule you need."""
