/* media._packetlog_c's flush_all: the writer thread's poll (media/_packetlog_c.c's head
 * comment): each log's pending buffer swapped under the GIL, then one release of the GIL for
 * all the writev(2)s, each record's fields from the buffer and its payload from the packet's
 * own bytes. */
#include "_packetlog.h"

typedef struct {
    TrackLog *log;
    int fd;
    int flush;      /* which buffer */
    Py_ssize_t packets;  /* packet records in the buffer */
    int err;        /* errno of a failed write, 0 */
} Job;

/* The buffer's records in order: each stretch of fields (and reports) from the buffer,
 * each payload from its packet. `iov` has room for 2 * nrefs + 1 entries; how many used. */
static int gather(Buffer *b, struct iovec *iov) {
    int n = 0;
    Py_ssize_t at = 0;
    for (Py_ssize_t i = 0; i < b->nrefs; i++) {
        Ref *r = &b->refs[i];
        if (r->fields_end > at) {
            iov[n].iov_base = b->data + at;
            iov[n++].iov_len = (size_t)(r->fields_end - at);
            at = r->fields_end;
        }
        if (r->size > 0) {
            iov[n].iov_base = (void *)r->payload;
            iov[n++].iov_len = (size_t)r->size;
        }
    }
    if (b->len > at) {
        iov[n].iov_base = b->data + at;
        iov[n++].iov_len = (size_t)(b->len - at);
    }
    return n;
}

/* All of iov[0..n) written (IOV_MAX at a time, short writes resumed); 0 or an errno. */
static int writev_all(int fd, struct iovec *iov, int n) {
    int i = 0;
    while (i < n) {
        int count = n - i < IOV_MAX ? n - i : IOV_MAX;
        ssize_t w = writev(fd, iov + i, count);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (w == 0)
            return EIO;  /* no progress */
        while (i < n && (size_t)w >= iov[i].iov_len) {
            w -= (ssize_t)iov[i].iov_len;
            i++;
        }
        if (w > 0) {
            iov[i].iov_base = (char *)iov[i].iov_base + w;
            iov[i].iov_len -= (size_t)w;
        }
    }
    return 0;
}

PyObject *packetlog_flush_all(PyObject *pairs, PyTypeObject *tracklog_type) {
    PyObject *seq = PySequence_Fast(pairs, "flush_all takes a sequence of (TrackLog, fd)");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    Job *jobs = PyMem_Calloc(n ? (size_t)n : 1, sizeof(Job));
    if (jobs == NULL) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    Py_ssize_t taken = 0;
    for (; taken < n; taken++) {  /* validate everything before swapping anything */
        PyObject *pair = PySequence_Fast_GET_ITEM(seq, taken), *log;
        int fd;
        if (!PyArg_ParseTuple(pair, "O!i;flush_all takes (TrackLog, fd) pairs", tracklog_type,
                              &log, &fd))
            goto fail;
        if (((TrackLog *)log)->flushing) {
            PyErr_SetString(PyExc_RuntimeError, "a TrackLog is flushed by one thread at once");
            goto fail;
        }
        for (Py_ssize_t j = 0; j < taken; j++) {
            if (jobs[j].log == (TrackLog *)log) {
                PyErr_SetString(PyExc_ValueError, "a TrackLog is named twice");
                goto fail;
            }
        }
        jobs[taken].log = (TrackLog *)log;
        jobs[taken].fd = fd;
    }
    for (Py_ssize_t i = 0; i < n; i++) {  /* swap: the tap goes on in the spare buffer */
        TrackLog *log = jobs[i].log;
        Py_INCREF(log);
        jobs[i].flush = log->active;
        jobs[i].packets = log->pending_packets;
        log->active ^= 1;
        log->buf[log->active].len = 0;
        log->pending = log->pending_packets = 0;
        log->flushing = 1;
    }
    Py_ssize_t bytes = 0, most = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Buffer *b = &jobs[i].log->buf[jobs[i].flush];
        bytes += b->len;
        if (2 * b->nrefs + 1 > most)
            most = 2 * b->nrefs + 1;
    }
    struct iovec *iov = bytes > 0 ? PyMem_RawMalloc((size_t)most * sizeof(struct iovec)) : NULL;
    if (bytes > 0 && iov == NULL) {
        for (Py_ssize_t i = 0; i < n; i++)
            jobs[i].err = ENOMEM;
    } else if (bytes > 0) {  /* nothing to write (an idle poll): the GIL kept, no hand-over */
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++) {
            Buffer *b = &jobs[i].log->buf[jobs[i].flush];
            if (b->len > 0)
                jobs[i].err = writev_all(jobs[i].fd, iov, gather(b, iov));
        }
        Py_END_ALLOW_THREADS
    }
    PyMem_RawFree(iov);
    PyObject *result = PyList_New(n);
    for (Py_ssize_t i = 0; i < n; i++) {
        TrackLog *log = jobs[i].log;
        Buffer *b = &log->buf[jobs[i].flush];
        clear_buffer(b);
        if (b->cap > KEEP_CAPACITY) {  /* a spike's buffer: not kept for ever */
            PyMem_RawFree(b->data);
            b->data = NULL;
            b->cap = 0;
        }
        if (b->refcap > KEEP_REFS) {
            PyMem_RawFree(b->refs);
            b->refs = NULL;
            b->refcap = 0;
        }
        log->flushing = 0;
        PyObject *item;
        if (jobs[i].err) {
            item = PyObject_CallFunction(PyExc_OSError, "is", jobs[i].err,
                                         strerror(jobs[i].err));
        } else {
            log->packets += jobs[i].packets;
            item = PyLong_FromSsize_t(jobs[i].packets);
        }
        Py_DECREF(log);
        if (result != NULL && item != NULL)
            PyList_SET_ITEM(result, i, item);
        else
            Py_XDECREF(item);
    }
    PyMem_Free(jobs);
    Py_DECREF(seq);
    if (result != NULL && PyErr_Occurred())
        Py_CLEAR(result);
    return result;
fail:
    PyMem_Free(jobs);
    Py_DECREF(seq);
    return NULL;
}
