use pyo3::prelude::*;

extern "C" {
    fn twice(x: i32) -> i32;
}

/// Twice `x`, computed in C.
#[pyfunction]
fn double(x: i32) -> i32 {
    unsafe { twice(x) }
}

#[pymodule]
fn needs_c(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(double, m)?)
}
