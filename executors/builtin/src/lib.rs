//! Built-in native kernels (W1-W3 benchmark kernels and useful ones) behind the Executor trait
