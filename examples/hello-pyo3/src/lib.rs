//! The wasmwheel example crate: the smallest useful PyO3 module, one function and one class.

use pyo3::prelude::*;

/// Return the sum of `a` and `b` as a string.
#[pyfunction]
fn sum_as_string(a: usize, b: usize) -> String {
    (a + b).to_string()
}

/// A counter that starts at zero.
#[pyclass]
#[derive(Default)]
struct Counter {
    count: u64,
}

#[pymethods]
impl Counter {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Add one and return the new count.
    fn increment(&mut self) -> u64 {
        self.count += 1;
        self.count
    }
}

#[pymodule]
fn hello_pyo3(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(sum_as_string, m)?)?;
    m.add_class::<Counter>()?;
    Ok(())
}
