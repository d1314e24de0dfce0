"""Model monitoring: drift of captured features against the training data, live accuracy."""
