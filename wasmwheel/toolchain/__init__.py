"""The toolchain steps: Rust, std for the target, binaryen (the lean linker's wasm-opt) or emsdk, and the
lean linker itself."""
