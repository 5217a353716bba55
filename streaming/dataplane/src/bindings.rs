//! The Python bindings of the rules (`vod_stream._dataplane`).

use std::collections::HashMap;
use std::path::PathBuf;

use pyo3::exceptions::{PyConnectionError, PyFileNotFoundError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};

use crate::conditional as cond;
use crate::plan as planmod;
use crate::ranges as r;

#[pyclass(frozen, eq, hash, module = "vod_stream._dataplane")]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ByteRange {
    #[pyo3(get)]
    start: u64,
    #[pyo3(get)]
    end: u64,
}

#[pymethods]
impl ByteRange {
    #[new]
    fn new(start: u64, end: u64) -> Self {
        ByteRange { start, end }
    }

    #[getter]
    fn length(&self) -> u64 {
        self.end - self.start + 1
    }

    fn content_range(&self, size: u64) -> String {
        format!("bytes {}-{}/{}", self.start, self.end, size)
    }

    fn __repr__(&self) -> String {
        format!("ByteRange(start={}, end={})", self.start, self.end)
    }
}

impl From<r::ByteRange> for ByteRange {
    fn from(b: r::ByteRange) -> Self {
        ByteRange { start: b.start, end: b.end }
    }
}

#[pyclass(eq, eq_int, frozen, hash, module = "vod_stream._dataplane")]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::upper_case_acronyms)]
pub enum RangeKind {
    NONE,
    IGNORED,
    SINGLE,
    SUFFIX,
    MULTI,
    UNSATISFIABLE,
}

#[pymethods]
impl RangeKind {
    /// The `kind` label of the range metric.
    #[getter]
    fn value(&self) -> &'static str {
        r::RangeKind::from(*self).label()
    }
}

impl From<r::RangeKind> for RangeKind {
    fn from(k: r::RangeKind) -> Self {
        match k {
            r::RangeKind::None => RangeKind::NONE,
            r::RangeKind::Ignored => RangeKind::IGNORED,
            r::RangeKind::Single => RangeKind::SINGLE,
            r::RangeKind::Suffix => RangeKind::SUFFIX,
            r::RangeKind::Multi => RangeKind::MULTI,
            r::RangeKind::Unsatisfiable => RangeKind::UNSATISFIABLE,
        }
    }
}

impl From<RangeKind> for r::RangeKind {
    fn from(k: RangeKind) -> Self {
        match k {
            RangeKind::NONE => r::RangeKind::None,
            RangeKind::IGNORED => r::RangeKind::Ignored,
            RangeKind::SINGLE => r::RangeKind::Single,
            RangeKind::SUFFIX => r::RangeKind::Suffix,
            RangeKind::MULTI => r::RangeKind::Multi,
            RangeKind::UNSATISFIABLE => r::RangeKind::Unsatisfiable,
        }
    }
}

#[pyclass(frozen, module = "vod_stream._dataplane")]
pub struct RangeSet {
    #[pyo3(get)]
    kind: RangeKind,
    inner: Vec<ByteRange>,
}

#[pymethods]
impl RangeSet {
    #[getter]
    fn ranges<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.inner.iter().copied())
    }
}

#[pyfunction]
fn parse_range(value: &str, size: u64, max_ranges: usize) -> RangeSet {
    let parsed = r::parse_range(value, size, max_ranges);
    RangeSet { kind: parsed.kind.into(), inner: parsed.ranges.into_iter().map(Into::into).collect() }
}

#[pyfunction]
fn coalesce<'py>(py: Python<'py>, ranges: Vec<ByteRange>) -> PyResult<Bound<'py, PyTuple>> {
    let inner: Vec<r::ByteRange> =
        ranges.iter().map(|b| r::ByteRange { start: b.start, end: b.end }).collect();
    PyTuple::new(py, r::coalesce(&inner).into_iter().map(ByteRange::from))
}

#[pyclass(frozen, eq, hash, module = "vod_stream._dataplane")]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EntityTag {
    #[pyo3(get)]
    opaque: String,
    #[pyo3(get)]
    weak: bool,
}

#[pymethods]
impl EntityTag {
    #[new]
    #[pyo3(signature = (opaque, weak=false))]
    fn new(opaque: String, weak: bool) -> Self {
        EntityTag { opaque, weak }
    }

    fn __str__(&self) -> String {
        self.inner().render()
    }

    fn __repr__(&self) -> String {
        format!("EntityTag(opaque={:?}, weak={})", self.opaque, if self.weak { "True" } else { "False" })
    }
}

impl EntityTag {
    fn inner(&self) -> cond::EntityTag {
        cond::EntityTag { opaque: self.opaque.clone(), weak: self.weak }
    }
}

impl From<cond::EntityTag> for EntityTag {
    fn from(t: cond::EntityTag) -> Self {
        EntityTag { opaque: t.opaque, weak: t.weak }
    }
}

#[pyfunction]
fn make_etag(inode: u64, size: u64, mtime_ns: i128) -> EntityTag {
    cond::make_etag(inode, size, mtime_ns).into()
}

#[pyfunction]
fn parse_etags<'py>(py: Python<'py>, value: &str) -> PyResult<Option<Bound<'py, PyTuple>>> {
    cond::parse_etags(value).map(|tags| PyTuple::new(py, tags.into_iter().map(EntityTag::from))).transpose()
}

#[pyfunction]
fn parse_single_etag(value: &str) -> Option<EntityTag> {
    cond::parse_single_etag(value).map(Into::into)
}

#[pyfunction]
fn parse_http_date(value: &str) -> Option<i64> {
    cond::parse_http_date(value)
}

#[pyfunction]
fn format_http_date(epoch_seconds: i64) -> String {
    cond::format_http_date(epoch_seconds)
}

#[pyfunction]
fn if_match_passes(header: &str, etag: &EntityTag) -> bool {
    cond::if_match_passes(header, &etag.inner())
}

#[pyfunction]
fn if_none_match_passes(header: &str, etag: &EntityTag) -> bool {
    cond::if_none_match_passes(header, &etag.inner())
}

#[pyfunction]
fn if_range_matches(header: &str, etag: &EntityTag, last_modified: i64) -> bool {
    cond::if_range_matches(header, &etag.inner(), last_modified)
}

#[pyclass(frozen, module = "vod_stream._dataplane")]
#[derive(Clone)]
pub struct Representation {
    #[pyo3(get)]
    size: u64,
    #[pyo3(get)]
    mtime: i64,
    #[pyo3(get)]
    etag: EntityTag,
    #[pyo3(get)]
    content_type: String,
}

#[pymethods]
impl Representation {
    #[new]
    fn new(size: u64, mtime: i64, etag: EntityTag, content_type: String) -> Self {
        Representation { size, mtime, etag, content_type }
    }
}

#[pyclass(frozen, module = "vod_stream._dataplane")]
#[derive(Clone, Default)]
pub struct Conditions {
    #[pyo3(get)]
    method: String,
    #[pyo3(get)]
    range: Option<String>,
    #[pyo3(get)]
    if_range: Option<String>,
    #[pyo3(get)]
    if_match: Option<String>,
    #[pyo3(get)]
    if_none_match: Option<String>,
    #[pyo3(get)]
    if_modified_since: Option<String>,
    #[pyo3(get)]
    if_unmodified_since: Option<String>,
}

#[pymethods]
impl Conditions {
    #[new]
    #[pyo3(signature = (method="GET".to_string(), range=None, if_range=None, if_match=None, if_none_match=None, if_modified_since=None, if_unmodified_since=None))]
    fn new(
        method: String,
        range: Option<String>,
        if_range: Option<String>,
        if_match: Option<String>,
        if_none_match: Option<String>,
        if_modified_since: Option<String>,
        if_unmodified_since: Option<String>,
    ) -> Self {
        Conditions {
            method,
            range,
            if_range,
            if_match,
            if_none_match,
            if_modified_since,
            if_unmodified_since,
        }
    }
}

#[pyclass(frozen, module = "vod_stream._dataplane")]
pub struct Plan {
    inner: planmod::Plan,
}

#[pymethods]
impl Plan {
    #[getter]
    fn status(&self) -> u16 {
        self.inner.status
    }

    #[getter]
    fn headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (name, value) in &self.inner.headers {
            dict.set_item(*name, value)?;
        }
        Ok(dict)
    }

    #[getter]
    fn body<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let items: Vec<PyObject> = self
            .inner
            .body
            .iter()
            .map(|s| match s {
                planmod::Segment::Bytes(b) => Ok(PyBytes::new(py, b).into_any().unbind()),
                planmod::Segment::File(range) => {
                    Ok(Bound::new(py, ByteRange::from(*range))?.into_any().unbind())
                }
            })
            .collect::<PyResult<_>>()?;
        PyTuple::new(py, items)
    }

    #[getter]
    fn kind(&self) -> RangeKind {
        self.inner.kind.into()
    }

    #[getter]
    fn error(&self) -> Option<&'static str> {
        self.inner.error
    }

    #[getter]
    fn head(&self) -> bool {
        self.inner.head
    }

    #[getter]
    fn content_length(&self) -> u64 {
        self.inner.content_length()
    }
}

#[pyfunction]
#[pyo3(signature = (cond, rep, *, max_ranges, boundary))]
fn decide(cond: &Conditions, rep: &Representation, max_ranges: usize, boundary: &str) -> PyResult<Plan> {
    let head = match cond.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        other => return Err(PyValueError::new_err(format!("decide() answers GET and HEAD, not {other}"))),
    };
    let conditions = planmod::Conditions {
        head,
        range: cond.range.as_deref(),
        if_range: cond.if_range.as_deref(),
        if_match: cond.if_match.as_deref(),
        if_none_match: cond.if_none_match.as_deref(),
        if_modified_since: cond.if_modified_since.as_deref(),
        if_unmodified_since: cond.if_unmodified_since.as_deref(),
    };
    let representation =
        planmod::Representation::new(rep.size, rep.mtime, rep.etag.inner(), rep.content_type.clone());
    Ok(Plan { inner: planmod::decide(&conditions, &representation, max_ranges, boundary) })
}

#[pyfunction]
fn media_path(url_path: &str) -> Option<String> {
    crate::paths::media_path(url_path)
}

/// Open a regular file under the resolved root for reading: its descriptor (the caller closes
/// it), or None when it is not a regular file inside the root.
#[pyfunction]
fn open_regular_file(root_real: PathBuf, relative: &str) -> Option<i32> {
    use std::os::fd::IntoRawFd;
    crate::paths::open_regular_file(&root_real, relative).ok().map(|f| f.fd.into_raw_fd())
}

#[pyfunction]
#[pyo3(signature = (target, exp, ip, *, prefix))]
fn canonical<'py>(
    py: Python<'py>,
    target: &str,
    exp: i64,
    ip: Option<&str>,
    prefix: bool,
) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &crate::signing::canonical(target, exp, ip, prefix))
}

#[pyfunction]
fn signature(key: &[u8], message: &[u8]) -> String {
    crate::signing::signature(key, message)
}

/// `None` when the signed-URL parameters authorize `path`, else why not.
#[pyfunction]
fn verify(
    path: &str,
    params: &Bound<'_, PyAny>,
    lookup: &Bound<'_, PyAny>,
    now: f64,
    ip: Option<&str>,
) -> PyResult<Option<&'static str>> {
    let param = |name: &str| -> Option<String> {
        params.call_method1("get", (name,)).ok().and_then(|v| v.extract::<Option<String>>().ok().flatten())
    };
    let mut error: Option<PyErr> = None;
    let mut look = |kid: &str| -> Option<Vec<u8>> {
        match lookup.call1((kid,)) {
            Ok(v) => v.extract::<Option<Vec<u8>>>().unwrap_or(None),
            Err(e) => {
                error = Some(e);
                None
            }
        }
    };
    let outcome = crate::signing::verify(path, &param, &mut look, now, ip);
    match error {
        Some(e) => Err(e),
        None => Ok(outcome),
    }
}

/// The path token for every file under `prefix` until `exp` (see `crate::tokens`).
#[pyfunction]
#[pyo3(signature = (key_id, key, prefix, exp, ip=None))]
fn path_token(key_id: &str, key: &[u8], prefix: &str, exp: i64, ip: Option<&str>) -> PyResult<String> {
    crate::tokens::make(key_id, key, prefix, exp, ip).map_err(PyValueError::new_err)
}

/// Check a `/t/<token>/...` raw path: the decoded path it may read, or why not (a str).
#[pyfunction]
#[pyo3(signature = (raw_path, lookup, now, ip=None, require_bound=false))]
fn verify_path_token(
    raw_path: &str,
    lookup: &Bound<'_, PyAny>,
    now: f64,
    ip: Option<&str>,
    require_bound: bool,
) -> PyResult<(Option<String>, Option<&'static str>)> {
    let mut look = |kid: &str| -> Option<Vec<u8>> {
        lookup.call1((kid,)).ok().and_then(|v| v.extract::<Option<Vec<u8>>>().ok().flatten())
    };
    Ok(match crate::tokens::verify(raw_path, &mut look, now, ip, require_bound) {
        Ok(authorized) => (Some(authorized.path), None),
        Err(why) => (None, Some(why)),
    })
}

/// `path` with a path token's signature replaced by `-`, for logs.
#[pyfunction]
fn redact_token(path: &str) -> String {
    crate::tokens::redact(path)
}

#[pyfunction]
fn read_keys<'py>(py: Python<'py>, folder: PathBuf) -> PyResult<Bound<'py, PyDict>> {
    let keys: HashMap<String, Vec<u8>> = crate::signing::read_keys(&folder);
    let dict = PyDict::new(py);
    for (name, key) in keys {
        dict.set_item(name, PyBytes::new(py, &key))?;
    }
    Ok(dict)
}

/// Run the data plane on an inherited listening socket until SIGTERM (see `crate::run`).
#[pyfunction]
fn serve(py: Python<'_>, config_json: &str, listen_fd: i32, ready_fd: i32) -> PyResult<i32> {
    let cfg: crate::config::Config = serde_json::from_str(config_json)
        .map_err(|e| PyValueError::new_err(format!("data plane config: {e}")))?;
    Ok(py.allow_threads(|| crate::run(cfg, listen_fd, ready_fd)))
}

/// The S3 multipart calls of resumable uploads (`vod_stream.tusstore.S3Store`), built from the
/// origin settings (`VOD_S3_*`, as JSON); each call releases the GIL while it waits.
#[pyclass(frozen, module = "vod_stream._dataplane")]
pub struct S3Multipart {
    inner: crate::multipart::Multipart,
}

fn multipart_error(error: crate::multipart::MultipartError) -> PyErr {
    match error {
        crate::multipart::MultipartError::NotFound(text) => PyFileNotFoundError::new_err(text),
        crate::multipart::MultipartError::Failed(text) => PyConnectionError::new_err(text),
    }
}

#[pymethods]
impl S3Multipart {
    #[new]
    fn new(config_json: &str) -> PyResult<Self> {
        let cfg: crate::config::OriginConfig = serde_json::from_str(config_json)
            .map_err(|e| PyValueError::new_err(format!("origin config: {e}")))?;
        let inner = crate::multipart::Multipart::from_config(&cfg).map_err(PyValueError::new_err)?;
        Ok(S3Multipart { inner })
    }

    fn create(&self, py: Python<'_>, key: &str) -> PyResult<String> {
        py.allow_threads(|| self.inner.create(key)).map_err(multipart_error)
    }

    fn put_part(
        &self,
        py: Python<'_>,
        key: &str,
        upload_id: &str,
        index: usize,
        data: &[u8],
    ) -> PyResult<String> {
        py.allow_threads(|| self.inner.put_part(key, upload_id, index, data)).map_err(multipart_error)
    }

    fn complete(
        &self,
        py: Python<'_>,
        key: &str,
        upload_id: &str,
        etags: Vec<String>,
    ) -> PyResult<Option<String>> {
        py.allow_threads(|| self.inner.complete(key, upload_id, etags)).map_err(multipart_error)
    }

    fn abort(&self, py: Python<'_>, key: &str, upload_id: &str) -> PyResult<()> {
        py.allow_threads(|| self.inner.abort(key, upload_id)).map_err(multipart_error)
    }
}

#[pymodule]
fn _dataplane(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ByteRange>()?;
    m.add_class::<RangeKind>()?;
    m.add_class::<RangeSet>()?;
    m.add_class::<EntityTag>()?;
    m.add_class::<Representation>()?;
    m.add_class::<Conditions>()?;
    m.add_class::<Plan>()?;
    m.add_class::<S3Multipart>()?;
    m.add_function(wrap_pyfunction!(parse_range, m)?)?;
    m.add_function(wrap_pyfunction!(coalesce, m)?)?;
    m.add_function(wrap_pyfunction!(make_etag, m)?)?;
    m.add_function(wrap_pyfunction!(parse_etags, m)?)?;
    m.add_function(wrap_pyfunction!(parse_single_etag, m)?)?;
    m.add_function(wrap_pyfunction!(parse_http_date, m)?)?;
    m.add_function(wrap_pyfunction!(format_http_date, m)?)?;
    m.add_function(wrap_pyfunction!(if_match_passes, m)?)?;
    m.add_function(wrap_pyfunction!(if_none_match_passes, m)?)?;
    m.add_function(wrap_pyfunction!(if_range_matches, m)?)?;
    m.add_function(wrap_pyfunction!(decide, m)?)?;
    m.add_function(wrap_pyfunction!(media_path, m)?)?;
    m.add_function(wrap_pyfunction!(open_regular_file, m)?)?;
    m.add_function(wrap_pyfunction!(canonical, m)?)?;
    m.add_function(wrap_pyfunction!(signature, m)?)?;
    m.add_function(wrap_pyfunction!(verify, m)?)?;
    m.add_function(wrap_pyfunction!(path_token, m)?)?;
    m.add_function(wrap_pyfunction!(verify_path_token, m)?)?;
    m.add_function(wrap_pyfunction!(redact_token, m)?)?;
    m.add_function(wrap_pyfunction!(read_keys, m)?)?;
    m.add_function(wrap_pyfunction!(serve, m)?)?;
    Ok(())
}
