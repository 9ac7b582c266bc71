//! A PyO3 module for wasmwheel's real-build tests: a value, a Python error, a Rust panic, what
//! the build settings (a --cfg in the recipe's rustflags, a variable in its env) made of it, and a
//! function compiled for a WebAssembly feature (SIMD) that the rest of the crate does not enable.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// The sum of `a` and `b`.
#[pyfunction]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// Raise ValueError(message) from Rust.
#[pyfunction]
fn fail(message: &str) -> PyResult<()> {
    Err(PyValueError::new_err(message.to_string()))
}

/// Panic in Rust: with unwinding, PyO3 raises pyo3_runtime.PanicException; with panic=abort the
/// runtime ends.
#[pyfunction]
fn boom() {
    panic!("boom from Rust");
}

/// (whether `--cfg probe_flag` was given, the compile-time value of PROBE_VALUE or "").
#[pyfunction]
fn build_info() -> (bool, &'static str) {
    (cfg!(probe_flag), option_env!("PROBE_VALUE").unwrap_or(""))
}

/// The sum of `xs` (wrapping), four lanes at a time with WebAssembly SIMD on wasm32.
#[pyfunction]
fn simd_sum(xs: Vec<i32>) -> i32 {
    #[cfg(target_arch = "wasm32")]
    {
        // SAFETY: the engines Pyodide runs on (Node, browsers) all have SIMD128.
        return unsafe { simd_sum_128(&xs) };
    }
    #[allow(unreachable_code)]
    xs.iter().fold(0i32, |a, &x| a.wrapping_add(x))
}

/// Only this function is compiled for simd128: the module's target_features section then names a
/// feature that the ABI's wasm-opt flags do not, which wasm-opt must learn from the module.
#[cfg(target_arch = "wasm32")]
#[target_feature(enable = "simd128")]
unsafe fn simd_sum_128(xs: &[i32]) -> i32 {
    use core::arch::wasm32::*;
    let chunks = xs.chunks_exact(4);
    let rest = chunks.remainder().iter().fold(0i32, |a, &x| a.wrapping_add(x));
    let mut acc = i32x4_splat(0);
    for c in chunks {
        acc = i32x4_add(acc, i32x4(c[0], c[1], c[2], c[3]));
    }
    i32x4_extract_lane::<0>(acc)
        .wrapping_add(i32x4_extract_lane::<1>(acc))
        .wrapping_add(i32x4_extract_lane::<2>(acc))
        .wrapping_add(i32x4_extract_lane::<3>(acc))
        .wrapping_add(rest)
}

#[pymodule]
fn probe(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(add, m)?)?;
    m.add_function(wrap_pyfunction!(fail, m)?)?;
    m.add_function(wrap_pyfunction!(boom, m)?)?;
    m.add_function(wrap_pyfunction!(build_info, m)?)?;
    m.add_function(wrap_pyfunction!(simd_sum, m)?)?;
    Ok(())
}
