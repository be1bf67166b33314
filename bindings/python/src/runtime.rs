//! The module's tokio runtime and the two ways Python waits on it: blocking with
//! the GIL released, or through an asyncio awaitable.

use std::future::Future;
use std::sync::OnceLock;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();

/// Worker threads of the module's runtime: the work is network IO, two are plenty.
const WORKER_THREADS: usize = 2;

/// The runtime every client call, watch and agent of the module runs on, made on
/// first use and shared with pyo3-async-runtimes for the asyncio bridge.
pub fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    let made = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("flotta-runtime")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the tokio runtime: {e}"))
    });
    match made {
        Ok(runtime) => {
            // Fails only when it was already set, to this same runtime.
            let _ = pyo3_async_runtimes::tokio::init_with_runtime(runtime);
            Ok(runtime)
        }
        Err(message) => Err(PyRuntimeError::new_err(message.clone())),
    }
}

/// Runs `future` to completion on the module's runtime with the GIL released.
///
/// Refused (instead of the panic tokio would raise) when called from one of the
/// runtime's own threads, e.g. from a Python workload runtime that `flotta.Agent`
/// calls: those must not block the runtime they run on.
pub fn block_on<F>(py: Python<'_>, future: F) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(PyRuntimeError::new_err(
            "a blocking flotta call cannot run on the flotta runtime's own threads; use flotta.AsyncClient there",
        ));
    }
    let runtime = runtime()?;
    Ok(py.detach(|| runtime.block_on(future)))
}

/// An asyncio awaitable of `future`'s output, converted by `convert` with the GIL
/// held once the future is done.
pub fn spawn_awaitable<'py, F, C>(
    py: Python<'py>,
    future: F,
    convert: C,
) -> PyResult<Bound<'py, PyAny>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    C: FnOnce(Python<'_>, F::Output) -> PyResult<Py<PyAny>> + Send + 'static,
{
    runtime()?;
    pyo3_async_runtimes::tokio::future_into_py(py, async move {
        let output = future.await;
        Python::attach(|py| convert(py, output))
    })
}
