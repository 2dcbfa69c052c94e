/* media._packetlog_c: the recorder's per-packet work in one C call per batch.
 *
 * encode_packets(packets, out, video, nxt, epoch) -> (n, nxt, odd)
 *
 * The same records, byte for byte, as media/packetlog.py's pure-Python `encode_packets`
 * (tests/media/test_packetlog_c.py compares both, CRC included): for each ForwardPacket taken
 * from the left of the deque `packets`, a record
 *
 *     u32 body length, u8 'P', u32 crc32(fields, seed = length + ('P' << 24)),
 *     fields = i64 ext_seq, u32 ts, f64 arrival, u8 flags, u32 epoch, then tail[8:]
 *
 * (little-endian) appended to the bytearray `out`. For a video track (`video` true) it also
 * keeps the sequence check of TrackWriter.drain: a packet in sequence (ext_seq == nxt, same
 * epoch, not a keyframe) moves `nxt` on; any other one ends the call after its record, and is
 * returned as `odd` (with `nxt` as it was before it) for the writer to look at in Python.
 * `epoch` -1 stands for "none yet". An item that is not a ForwardPacket (a sender report the
 * producer queued where it arrived among the packets) ends the call too, for any track:
 * taken off the deque without a record and returned as `odd`, for the writer to log.
 *
 * The deque is only read and emptied while this call holds the GIL (no Python code runs in
 * between): the forwarding path's appends land before or after the call, never lost.
 * Built by `pip install -e .` (setup.py) or `python media/packetlog_build.py`; without it
 * media/packetlog.py does the same in Python.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define TYPE_PACKET 'P'
#define EXT_BLOCK_LEN 8
#define RECORD_LEN 9   /* <IBI */
#define FIELDS_LEN 25  /* <qIdBI */

static uint32_t crc_table[256];

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

/* zlib.crc32(data, seed) */
static uint32_t crc32_seeded(const unsigned char *p, size_t n, uint32_t seed) {
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

static PyObject *s_ext_seq, *s_ts, *s_arrival, *s_marker, *s_keyframe, *s_epoch, *s_tail,
    *s_popleft, *s_clear;
static PyTypeObject *packet_type;  /* media.rtp.ForwardPacket */

/* An attribute as an unsigned 32-bit value, as struct's 'I' takes it (else struct.error-like). */
static int get_u32(PyObject *fp, PyObject *name, uint32_t *value) {
    PyObject *o = PyObject_GetAttr(fp, name);
    if (o == NULL)
        return -1;
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    Py_DECREF(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    if (v > 0xFFFFFFFFull) {
        PyErr_Format(PyExc_OverflowError, "%U out of range for a u32", name);
        return -1;
    }
    *value = (uint32_t)v;
    return 0;
}

static int get_bool(PyObject *fp, PyObject *name) {
    PyObject *o = PyObject_GetAttr(fp, name);
    if (o == NULL)
        return -1;
    int r = PyObject_IsTrue(o);
    Py_DECREF(o);
    return r;
}

/* One record onto `out`; the packet's ext_seq, epoch and keyframe flag back for the check. */
static int encode_one(PyObject *fp, PyObject *out, long long *ext_seq, uint32_t *epoch,
                      int *keyframe) {
    uint32_t ts;
    double arrival;
    PyObject *o = PyObject_GetAttr(fp, s_ext_seq);
    if (o == NULL)
        return -1;
    *ext_seq = PyLong_AsLongLong(o);
    Py_DECREF(o);
    if (*ext_seq == -1 && PyErr_Occurred())
        return -1;
    if (get_u32(fp, s_ts, &ts) < 0 || get_u32(fp, s_epoch, epoch) < 0)
        return -1;
    o = PyObject_GetAttr(fp, s_arrival);
    if (o == NULL)
        return -1;
    arrival = PyFloat_AsDouble(o);
    Py_DECREF(o);
    if (arrival == -1.0 && PyErr_Occurred())
        return -1;
    int marker = get_bool(fp, s_marker);
    if (marker < 0 || (*keyframe = get_bool(fp, s_keyframe)) < 0)
        return -1;

    PyObject *tail = PyObject_GetAttr(fp, s_tail);
    if (tail == NULL)
        return -1;
    Py_buffer view;
    if (PyObject_GetBuffer(tail, &view, PyBUF_SIMPLE) < 0) {
        Py_DECREF(tail);
        return -1;
    }
    int rc = -1;
    if (view.len < EXT_BLOCK_LEN) {
        PyErr_SetString(PyExc_ValueError, "a packet's tail is shorter than its extension block");
        goto done;
    }
    Py_ssize_t payload = view.len - EXT_BLOCK_LEN;
    Py_ssize_t at = PyByteArray_GET_SIZE(out);
    if (PyByteArray_Resize(out, at + RECORD_LEN + FIELDS_LEN + payload) < 0)
        goto done;
    unsigned char *p = (unsigned char *)PyByteArray_AS_STRING(out) + at;
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
    put_u32(p + 5, crc32_seeded(fields, FIELDS_LEN, length + ((uint32_t)TYPE_PACKET << 24)));
    memcpy(fields + FIELDS_LEN, (const char *)view.buf + EXT_BLOCK_LEN, (size_t)payload);
    rc = 0;
done:
    PyBuffer_Release(&view);
    Py_DECREF(tail);
    return rc;
}

static PyObject *encode_packets(PyObject *self, PyObject *args) {
    PyObject *packets, *out;
    int video;
    long long nxt, epoch;
    if (!PyArg_ParseTuple(args, "OO!pLL", &packets, &PyByteArray_Type, &out, &video, &nxt,
                          &epoch))
        return NULL;
    Py_ssize_t start = PyByteArray_GET_SIZE(out);
    PyObject *it = PyObject_GetIter(packets);
    if (it == NULL)
        return NULL;
    Py_ssize_t n = 0;
    Py_ssize_t taken = 0;  /* items to take off the deque when the call stops early */
    PyObject *odd = NULL, *fp;
    while ((fp = PyIter_Next(it)) != NULL) {
        if (Py_TYPE(fp) != packet_type) {  /* a sender report: the writer logs it */
            odd = fp;
            taken = n + 1;
            break;
        }
        long long ext_seq;
        uint32_t fp_epoch;
        int keyframe;
        if (encode_one(fp, out, &ext_seq, &fp_epoch, &keyframe) < 0) {
            Py_DECREF(fp);
            Py_DECREF(it);
            PyByteArray_Resize(out, start);  /* as it was; nothing taken from the deque */
            return NULL;
        }
        n++;
        if (video) {
            if (ext_seq == nxt && (long long)fp_epoch == epoch && !keyframe) {
                nxt++;
            } else {
                odd = fp;  /* keeps the reference */
                taken = n;
                break;
            }
        }
        Py_DECREF(fp);
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) {
        Py_XDECREF(odd);
        PyByteArray_Resize(out, start);
        return NULL;
    }
    /* take what was encoded off the deque: all of it, or the first `taken` */
    if (odd == NULL) {
        PyObject *r = PyObject_CallMethodNoArgs(packets, s_clear);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    } else {
        for (Py_ssize_t i = 0; i < taken; i++) {
            PyObject *r = PyObject_CallMethodNoArgs(packets, s_popleft);
            if (r == NULL) {
                Py_DECREF(odd);
                return NULL;
            }
            Py_DECREF(r);
        }
    }
    if (odd == NULL)
        return Py_BuildValue("nLO", n, nxt, Py_None);
    return Py_BuildValue("nLN", n, nxt, odd);
}

static PyMethodDef methods[] = {
    {"encode_packets", encode_packets, METH_VARARGS,
     "encode_packets(packets, out, video, nxt, epoch) -> (n, nxt, odd): packet records of "
     "a deque of ForwardPacket onto a bytearray (media/packetlog.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "media._packetlog_c", NULL, -1,
                                    methods};

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
#define INTERN(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL
    INTERN(s_ext_seq, "ext_seq");
    INTERN(s_ts, "ts");
    INTERN(s_arrival, "arrival");
    INTERN(s_marker, "marker");
    INTERN(s_keyframe, "keyframe");
    INTERN(s_epoch, "epoch");
    INTERN(s_tail, "tail");
    INTERN(s_popleft, "popleft");
    INTERN(s_clear, "clear");
#undef INTERN
    return PyModule_Create(&module);
}
