"""grader: autograder and report generator for the Fashion-MNIST Keras assignment."""

__version__ = "0.1.0"
