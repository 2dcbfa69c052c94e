/* media._packetlog_c: a recorded track's packet records, encoded at the tap, written with
 * the GIL released.
 *
 * TrackLog(video, max_packets) is a producer's recording tap (media/recorder.py):
 *
 *   log(fp)          the forwarding path's call, once per forwarded packet of the track: the
 *                    record's fields are appended to the log's pending buffer while the packet
 *                    is still in the cache, and its payload is not copied: the log holds a
 *                    reference to the packet's `tail` (immutable bytes, which the video
 *                    history holds for a second anyway) until the writer has written it. Never
 *                    raises: a packet that cannot be encoded (a field out of range, no memory)
 *                    or that finds `max_packets` records already pending is counted
 *                    (`invalid`, `dropped`) and left out.
 *   log.report(sr)   a sender report (media.recv_stream.SenderReportRef), logged where it
 *                    arrived among the packets.
 *   log.take_odd()   the video packets that broke the sequence since the last call (out of
 *                    sequence, a keyframe, a new source), each as (fp, nxt, epoch): the
 *                    ext_seq expected and the epoch (-1: none yet) before it, for the writer
 *                    thread's keyframe bookkeeping (TrackWriter).
 *   log.close()      pending records discarded, the tap does nothing from then on.
 *
 * flush_all([(log, fd), ...]) -> [packet records written or OSError, ...]: the writer thread's poll.
 * Under the GIL each log's pending buffer is swapped with its spare (empty) one; then ONE
 * release of the GIL for all the writev(2)s (each record's fields from the buffer, its payload
 * straight from the packet's bytes: the kernel's copy is the only one), so the forwarding
 * thread taps on meanwhile and the writer hands the GIL over once per poll, not once per
 * track; the payloads' references are dropped after, under the GIL.
 *
 * A record, little-endian (media/packetlog.py, the same bytes as its Python TrackLogPy,
 * tests/media/test_packetlog_c.py):
 *     u32 body length, u8 'P', u32 crc32(fields, seed = length + ('P' << 24)),
 *     fields = i64 ext_seq, u32 ts, f64 arrival, u8 flags, u32 epoch, then tail[8:]
 *     u32 12, u8 'S', u32 crc32(body, seed = 12 + ('S' << 24)),
 *     body = u32 rtp_ts, f64 local, u32 epoch
 *
 * read_records(buffer, pos, LoggedPacket, LoggedReport): the other end, the mux process's
 * LogReader (media/_packetlog_read.c).
 *
 * Built by `pip install -e .` (setup.py) or `python media/packetlog_build.py`; without it
 * media/packetlog.py does the same in Python.
 */
#include "_packetlog.h"

#define TYPE_PACKET 'P'
#define TYPE_SR 'S'
#define EXT_BLOCK_LEN 8
#define RECORD_LEN 9   /* <IBI */
#define FIELDS_LEN 25  /* <qIdBI */
#define SR_LEN 16      /* <IdI */
#define FIRST_CAPACITY (16 * 1024)  /* the fields of ~480 packets */

static uint32_t crc_table[256];

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

/* zlib.crc32(data, seed); also the reader's (media/_packetlog_read.c) */
uint32_t packetlog_crc32(const unsigned char *p, size_t n, uint32_t seed) {
    uint32_t c = seed ^ 0xFFFFFFFFu;
    while (n--)
        c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static void put_u32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24);
}

static void put_u64(unsigned char *p, uint64_t v) {
    put_u32(p, (uint32_t)v);
    put_u32(p + 4, (uint32_t)(v >> 32));
}

static PyTypeObject *packet_type;  /* media.rtp.ForwardPacket */
/* its slots' offsets: read directly, not through attribute lookups (the tap's hot path) */
static Py_ssize_t off_ext_seq, off_ts, off_arrival, off_marker, off_keyframe, off_epoch,
    off_tail;
static PyObject *s_rtp_ts, *s_local, *s_epoch;

/* Room for `n` more bytes in the active buffer (capacity doubles: no copy per packet). */
static unsigned char *reserve(Buffer *b, Py_ssize_t n) {
    if (b->len + n > b->cap) {
        Py_ssize_t cap = b->cap ? b->cap : FIRST_CAPACITY;
        while (cap < b->len + n)
            cap *= 2;
        char *data = PyMem_RawRealloc(b->data, (size_t)cap);
        if (data == NULL)
            return NULL;
        b->data = data;
        b->cap = cap;
    }
    return (unsigned char *)b->data + b->len;
}

static int slot_u32(PyObject *o, uint32_t *value) {
    if (o == NULL || !PyLong_Check(o))
        return -1;
    unsigned long v = PyLong_AsUnsignedLong(o);
    if (v == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    if (v > 0xFFFFFFFFul)
        return -1;
    *value = (uint32_t)v;
    return 0;
}

#define SLOT(fp, off) (*(PyObject **)((char *)(fp) + (off)))

/* A slot for one more payload reference (doubling). */
static Ref *reserve_ref(Buffer *b) {
    if (b->nrefs == b->refcap) {
        Py_ssize_t cap = b->refcap ? b->refcap * 2 : 256;
        Ref *refs = PyMem_RawRealloc(b->refs, (size_t)cap * sizeof(Ref));
        if (refs == NULL)
            return NULL;
        b->refs = refs;
        b->refcap = cap;
    }
    return &b->refs[b->nrefs];
}

/* The packet's record onto the active buffer; -1 (a Python error may be set) when it
 * cannot be encoded, the buffer as it was. */
static int encode_packet(TrackLog *self, PyObject *fp, long long *ext_seq, uint32_t *epoch,
                         int *keyframe) {
    PyObject *o_seq = SLOT(fp, off_ext_seq), *o_arrival = SLOT(fp, off_arrival),
             *o_marker = SLOT(fp, off_marker), *o_key = SLOT(fp, off_keyframe),
             *tail = SLOT(fp, off_tail);
    uint32_t ts;
    if (o_seq == NULL || o_arrival == NULL || o_marker == NULL || o_key == NULL ||
        tail == NULL || !PyLong_Check(o_seq))
        return -1;
    *ext_seq = PyLong_AsLongLong(o_seq);
    if (*ext_seq == -1 && PyErr_Occurred())
        return -1;
    if (slot_u32(SLOT(fp, off_ts), &ts) < 0 || slot_u32(SLOT(fp, off_epoch), epoch) < 0)
        return -1;
    double arrival = PyFloat_CheckExact(o_arrival) ? PyFloat_AS_DOUBLE(o_arrival)
                                                   : PyFloat_AsDouble(o_arrival);
    if (arrival == -1.0 && PyErr_Occurred())
        return -1;
    int marker = PyObject_IsTrue(o_marker);
    *keyframe = PyObject_IsTrue(o_key);
    if (marker < 0 || *keyframe < 0)
        return -1;
    const char *bytes;
    Py_ssize_t size;
    if (PyBytes_CheckExact(tail)) {
        bytes = PyBytes_AS_STRING(tail);
        size = PyBytes_GET_SIZE(tail);
    } else {
        return -1;  /* the producer's tail is always bytes */
    }
    if (size < EXT_BLOCK_LEN)
        return -1;
    Py_ssize_t payload = size - EXT_BLOCK_LEN;
    Buffer *b = &self->buf[self->active];
    Ref *ref = reserve_ref(b);
    unsigned char *p = ref != NULL ? reserve(b, RECORD_LEN + FIELDS_LEN) : NULL;
    if (p == NULL)
        return -1;
    unsigned char *fields = p + RECORD_LEN;
    uint64_t bits;
    memcpy(&bits, &arrival, 8);
    put_u64(fields, (uint64_t)*ext_seq);
    put_u32(fields + 8, ts);
    put_u64(fields + 12, bits);
    fields[20] = (unsigned char)((marker ? 1 : 0) | (*keyframe ? 2 : 0));
    put_u32(fields + 21, *epoch);
    uint32_t length = (uint32_t)(FIELDS_LEN + payload);
    put_u32(p, length);
    p[4] = TYPE_PACKET;
    put_u32(p + 5, packetlog_crc32(fields, FIELDS_LEN, length + ((uint32_t)TYPE_PACKET << 24)));
    b->len += RECORD_LEN + FIELDS_LEN;
    Py_INCREF(tail);
    ref->tail = tail;
    ref->payload = bytes + EXT_BLOCK_LEN;
    ref->size = payload;
    ref->fields_end = b->len;
    b->nrefs++;
    return 0;
}

/* A video packet out of the sequence: kept for take_odd with what was expected before it. */
static void note_odd(TrackLog *self, PyObject *fp) {
    PyObject *entry = Py_BuildValue("(OLL)", fp, self->nxt, self->epoch);
    if (entry != NULL && self->odd == NULL)
        self->odd = PyList_New(0);
    if (entry == NULL || self->odd == NULL || PyList_Append(self->odd, entry) < 0)
        PyErr_Clear();  /* no memory: the writer misses one keyframe hint, the log is whole */
    Py_XDECREF(entry);
}

static PyObject *tap(PyObject *callable, PyObject *const *args, size_t nargsf,
                     PyObject *kwnames) {
    TrackLog *self = (TrackLog *)callable;
    if (PyVectorcall_NARGS(nargsf) != 1 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "a TrackLog is called with one ForwardPacket");
        return NULL;
    }
    PyObject *fp = args[0];
    if (self->closed)
        Py_RETURN_NONE;
    if (self->pending >= self->max_packets) {  /* the writer is behind: never wait for it */
        self->dropped++;
        Py_RETURN_NONE;
    }
    long long ext_seq;
    uint32_t epoch;
    int keyframe;
    if (Py_TYPE(fp) != packet_type || encode_packet(self, fp, &ext_seq, &epoch, &keyframe) < 0) {
        PyErr_Clear();  /* the forwarding path never sees the recorder's trouble */
        self->invalid++;
        Py_RETURN_NONE;
    }
    self->pending++;
    self->pending_packets++;
    if (self->video) {
        if (ext_seq == self->nxt && (long long)epoch == self->epoch && !keyframe) {
            self->nxt++;  /* the usual case */
        } else {
            note_odd(self, fp);
            if ((long long)epoch != self->epoch) {
                self->epoch = epoch;
                self->nxt = -1;
            }
            if (ext_seq >= self->nxt)
                self->nxt = ext_seq + 1;
        }
    }
    Py_RETURN_NONE;
}

static PyObject *TrackLog_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"video", "max_packets", NULL};
    int video;
    Py_ssize_t max_packets;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "pn", kwlist, &video, &max_packets))
        return NULL;
    if (max_packets < 1) {
        PyErr_SetString(PyExc_ValueError, "max_packets must be at least 1");
        return NULL;
    }
    TrackLog *self = (TrackLog *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->vectorcall = tap;
    self->video = video;
    self->max_packets = max_packets;
    self->nxt = -1;
    self->epoch = -1;
    return (PyObject *)self;
}

static int TrackLog_traverse(TrackLog *self, visitproc visit, void *arg) {
    Py_VISIT(self->odd);
    return 0;
}

static int TrackLog_clear(TrackLog *self) {
    Py_CLEAR(self->odd);
    return 0;
}

static void TrackLog_dealloc(TrackLog *self) {
    PyObject_GC_UnTrack(self);
    TrackLog_clear(self);
    for (int i = 0; i < 2; i++) {
        clear_buffer(&self->buf[i]);
        PyMem_RawFree(self->buf[i].data);
        PyMem_RawFree(self->buf[i].refs);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *TrackLog_report(TrackLog *self, PyObject *sr) {
    if (self->closed)
        Py_RETURN_NONE;
    if (self->pending >= self->max_packets) {
        self->dropped++;
        Py_RETURN_NONE;
    }
    PyObject *o_ts = PyObject_GetAttr(sr, s_rtp_ts);
    PyObject *o_local = o_ts ? PyObject_GetAttr(sr, s_local) : NULL;
    PyObject *o_epoch = o_local ? PyObject_GetAttr(sr, s_epoch) : NULL;
    if (o_epoch == NULL) {
        Py_XDECREF(o_ts);
        Py_XDECREF(o_local);
        return NULL;
    }
    /* as packetlog.append_report: the RTP time and the epoch modulo 2**32 */
    unsigned long ts = PyLong_AsUnsignedLongMask(o_ts);
    double local = PyFloat_AsDouble(o_local);
    unsigned long epoch = PyLong_AsUnsignedLongMask(o_epoch);
    Py_DECREF(o_ts);
    Py_DECREF(o_local);
    Py_DECREF(o_epoch);
    if (PyErr_Occurred())
        return NULL;
    unsigned char *p = reserve(&self->buf[self->active], RECORD_LEN + SR_LEN);
    if (p == NULL)
        return PyErr_NoMemory();
    unsigned char *body = p + RECORD_LEN;
    uint64_t bits;
    memcpy(&bits, &local, 8);
    put_u32(body, (uint32_t)ts);
    put_u64(body + 4, bits);
    put_u32(body + 12, (uint32_t)epoch);
    put_u32(p, SR_LEN);
    p[4] = TYPE_SR;
    put_u32(p + 5, packetlog_crc32(body, SR_LEN, SR_LEN + ((uint32_t)TYPE_SR << 24)));
    self->buf[self->active].len += RECORD_LEN + SR_LEN;
    self->pending++;
    Py_RETURN_NONE;
}

static PyObject *TrackLog_take_odd(TrackLog *self, PyObject *unused) {
    PyObject *odd = self->odd;
    self->odd = NULL;
    return odd != NULL ? odd : PyList_New(0);
}

static PyObject *TrackLog_close(TrackLog *self, PyObject *unused) {
    self->closed = 1;
    clear_buffer(&self->buf[self->active]);
    self->pending = self->pending_packets = 0;
    Py_CLEAR(self->odd);
    Py_RETURN_NONE;
}

static PyObject *TrackLog_get_pending_bytes(TrackLog *self, void *closure) {
    return PyLong_FromSsize_t(self->buf[self->active].len);
}

static PyMethodDef TrackLog_methods[] = {
    {"report", (PyCFunction)TrackLog_report, METH_O,
     "report(sr): a sender report's record, where it arrived among the packets."},
    {"take_odd", (PyCFunction)TrackLog_take_odd, METH_NOARGS,
     "take_odd() -> [(fp, nxt, epoch)]: the video packets that broke the sequence."},
    {"close", (PyCFunction)TrackLog_close, METH_NOARGS,
     "close(): pending records discarded; the tap does nothing from now on."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef TrackLog_members[] = {
    {"video", T_INT, offsetof(TrackLog, video), READONLY, NULL},
    {"max_packets", T_PYSSIZET, offsetof(TrackLog, max_packets), READONLY, NULL},
    {"pending", T_PYSSIZET, offsetof(TrackLog, pending), READONLY,
     "records waiting for the next flush"},
    {"packets", T_PYSSIZET, offsetof(TrackLog, packets), READONLY,
     "packet records written by flush_all"},
    {"dropped", T_PYSSIZET, offsetof(TrackLog, dropped), READONLY,
     "packets (and reports) left out: max_packets were pending"},
    {"invalid", T_PYSSIZET, offsetof(TrackLog, invalid), READONLY,
     "packets left out: not a ForwardPacket, or a field out of range"},
    {"closed", T_INT, offsetof(TrackLog, closed), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef TrackLog_getset[] = {
    {"pending_bytes", (getter)TrackLog_get_pending_bytes, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject TrackLog_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "media._packetlog_c.TrackLog",
    .tp_basicsize = sizeof(TrackLog),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "TrackLog(video, max_packets): a track's recording tap (media/_packetlog_c.c)",
    .tp_new = TrackLog_new,
    .tp_dealloc = (destructor)TrackLog_dealloc,
    .tp_traverse = (traverseproc)TrackLog_traverse,
    .tp_clear = (inquiry)TrackLog_clear,
    .tp_vectorcall_offset = offsetof(TrackLog, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_methods = TrackLog_methods,
    .tp_members = TrackLog_members,
    .tp_getset = TrackLog_getset,
};

static PyObject *flush_all(PyObject *module, PyObject *pairs) {
    return packetlog_flush_all(pairs, &TrackLog_Type);
}

static PyObject *read_records(PyObject *module, PyObject *args) {
    return packetlog_read_records(args);
}

static PyMethodDef methods[] = {
    {"flush_all", flush_all, METH_O,
     "flush_all([(log, fd), ...]) -> [records written or OSError]: each TrackLog's pending "
     "records written to its fd, all with the GIL released once."},
    {"read_records", read_records, METH_VARARGS,
     "read_records(buffer, pos, packet_type, report_type) -> (records, pos, bad, bad_at): the "
     "mux process's reading of a packet log (media/_packetlog_read.c)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "media._packetlog_c", NULL, -1,
                                    methods};

/* The offset of ForwardPacket's slot `name` (a member descriptor of an object slot). */
static int slot_offset(const char *name, Py_ssize_t *offset) {
    PyObject *d = PyObject_GetAttrString((PyObject *)packet_type, name);
    if (d == NULL)
        return -1;
    int ok = Py_IS_TYPE(d, &PyMemberDescr_Type) &&
             ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX;
    if (ok)
        *offset = ((PyMemberDescrObject *)d)->d_member->offset;
    Py_DECREF(d);
    if (!ok) {
        PyErr_Format(PyExc_TypeError, "ForwardPacket.%s is not a slot", name);
        return -1;
    }
    return 0;
}

PyMODINIT_FUNC PyInit__packetlog_c(void) {
    crc_init();
    PyObject *rtp = PyImport_ImportModule("media.rtp");
    if (rtp == NULL)
        return NULL;
    packet_type = (PyTypeObject *)PyObject_GetAttrString(rtp, "ForwardPacket");
    Py_DECREF(rtp);
    if (packet_type == NULL)
        return NULL;
    if (!PyType_Check(packet_type)) {
        PyErr_SetString(PyExc_TypeError, "media.rtp.ForwardPacket is not a type");
        return NULL;
    }
    if (slot_offset("ext_seq", &off_ext_seq) < 0 || slot_offset("ts", &off_ts) < 0 ||
        slot_offset("arrival", &off_arrival) < 0 || slot_offset("marker", &off_marker) < 0 ||
        slot_offset("keyframe", &off_keyframe) < 0 || slot_offset("epoch", &off_epoch) < 0 ||
        slot_offset("tail", &off_tail) < 0)
        return NULL;
#define INTERN(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL
    INTERN(s_rtp_ts, "rtp_ts");
    INTERN(s_local, "local");
    INTERN(s_epoch, "epoch");
#undef INTERN
    if (PyType_Ready(&TrackLog_Type) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&TrackLog_Type);
    if (PyModule_AddObject(m, "TrackLog", (PyObject *)&TrackLog_Type) < 0) {
        Py_DECREF(&TrackLog_Type);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
