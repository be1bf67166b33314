//! JSON values to Python objects and back: objects are `dict`s (keys in order),
//! arrays `list`s, numbers `int` or `float`, `null` is `None`.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Number, Value};

/// Nesting deeper than this is refused on the way in (a cyclic `dict` would recurse
/// forever otherwise).
const MAX_DEPTH: usize = 128;

/// Converts a JSON value to the equivalent Python object.
pub fn to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                PyFloat::new(py, n.as_f64().unwrap_or(f64::NAN)).into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (key, item) in map {
                dict.set_item(key, to_py(py, item)?)?;
            }
            dict.into_any()
        }
    })
}

/// Converts a Python object made of `dict` (string keys), `list`, `tuple`, `str`,
/// `int`, `float`, `bool` and `None` to JSON.
pub fn from_py(object: &Bound<'_, PyAny>) -> PyResult<Value> {
    from_py_at(object, 0, "")
}

fn from_py_at(object: &Bound<'_, PyAny>, depth: usize, path: &str) -> PyResult<Value> {
    if depth > MAX_DEPTH {
        return Err(PyTypeError::new_err(format!(
            "{path}: nested deeper than {MAX_DEPTH} levels"
        )));
    }
    if object.is_none() {
        return Ok(Value::Null);
    }
    // bool before int: Python's bool is an int.
    if let Ok(b) = object.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if object.is_instance_of::<PyInt>() {
        if let Ok(i) = object.extract::<i64>() {
            return Ok(Value::from(i));
        }
        let u: u64 = object.extract().map_err(|_| {
            PyTypeError::new_err(format!("{}: integer out of range", display(path)))
        })?;
        return Ok(Value::from(u));
    }
    if let Ok(f) = object.cast::<PyFloat>() {
        return Number::from_f64(f.value())
            .map(Value::Number)
            .ok_or_else(|| {
                PyTypeError::new_err(format!(
                    "{}: {} is not a JSON number",
                    display(path),
                    f.value()
                ))
            });
    }
    if let Ok(s) = object.cast::<PyString>() {
        return Ok(Value::String(s.to_str()?.to_owned()));
    }
    if let Ok(dict) = object.cast::<PyDict>() {
        let mut map = Map::new();
        for (key, item) in dict.iter() {
            let key: String = key.extract().map_err(|_| {
                PyTypeError::new_err(format!("{}: mapping keys must be str", display(path)))
            })?;
            let child = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            map.insert(key, from_py_at(&item, depth + 1, &child)?);
        }
        return Ok(Value::Object(map));
    }
    if object.is_instance_of::<PyList>() || object.is_instance_of::<PyTuple>() {
        let mut items = Vec::new();
        for (index, item) in object.try_iter()?.enumerate() {
            items.push(from_py_at(&item?, depth + 1, &format!("{path}[{index}]"))?);
        }
        return Ok(Value::Array(items));
    }
    // Resource objects and mapping views offer `to_dict()`.
    if let Ok(method) = object.getattr("to_dict") {
        return from_py_at(&method.call0()?, depth + 1, path);
    }
    Err(PyTypeError::new_err(format!(
        "{}: cannot convert {} to JSON",
        display(path),
        object.get_type().name()?
    )))
}

fn display(path: &str) -> &str {
    if path.is_empty() { "value" } else { path }
}
