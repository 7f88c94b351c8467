"""Package data: the embedded Fashion-MNIST demo subset (fashion_mnist_demo.npz) and its licence."""
