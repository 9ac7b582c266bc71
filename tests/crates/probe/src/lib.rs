//! A PyO3 module for wasmwheel's real-build tests: a value, a Python error, a Rust panic, and what
//! the build settings (a --cfg in the recipe's rustflags, a variable in its env) made of it.

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

#[pymodule]
fn probe(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(add, m)?)?;
    m.add_function(wrap_pyfunction!(fail, m)?)?;
    m.add_function(wrap_pyfunction!(boom, m)?)?;
    m.add_function(wrap_pyfunction!(build_info, m)?)?;
    Ok(())
}
