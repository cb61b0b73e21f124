"""What is in a model without downloading it: GGUF and safetensors headers, memory fit."""
