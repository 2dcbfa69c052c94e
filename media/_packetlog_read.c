/* media._packetlog_c's read_records: the mux process's loop over a packet log's records
 * (media/packetlog.py LogReader, which does the same in Python without the module).
 *
 * read_records(buffer, pos, packet_type, report_type) -> (records, pos, bad, bad_at)
 *   buffer: the bytes read so far past the header (any contiguous buffer); from `pos`, every
 *   whole record is checked (its length, the CRC-32 of its fields) and, when a packet ('P',
 *   body of at least the fields) or a sender report ('S', body of exactly its fields),
 *   made into a packet_type / report_type instance (tuple subclasses: LoggedPacket,
 *   LoggedReport, whose fields they fill in order; packet: ext_seq, ts, marker (0x80 or 0),
 *   keyframe (bool), epoch, arrival, payload (bytes); report: rtp_ts, local, epoch). Other
 *   whole, checked records (a later version's) are skipped. It stops at the first record not
 *   all in the buffer; `pos` is where (the records before it consumed). `bad` is None, or
 *   "length" / "checksum" for the record at `bad_at` that ends the log (garbage). */
#include "_packetlog.h"

#define TYPE_PACKET 'P'
#define TYPE_SR 'S'
#define RECORD_LEN 9   /* <IBI */
#define FIELDS_LEN 25  /* <qIdBI */
#define SR_LEN 16      /* <IdI */
#define MAX_BODY (1 << 16)

static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static uint64_t get_u64(const unsigned char *p) {
    return (uint64_t)get_u32(p) | ((uint64_t)get_u32(p + 4) << 32);
}

static double get_f64(const unsigned char *p) {
    uint64_t bits = get_u64(p);
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

/* A tuple subclass's instance with `n` items (stolen; NULL items: fails, all released). */
static PyObject *make(PyTypeObject *type, PyObject **items, Py_ssize_t n) {
    int ok = 1;
    for (Py_ssize_t i = 0; i < n; i++)
        ok &= items[i] != NULL;
    PyObject *obj = ok ? type->tp_alloc(type, n) : NULL;
    if (obj == NULL) {
        for (Py_ssize_t i = 0; i < n; i++)
            Py_XDECREF(items[i]);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        PyTuple_SET_ITEM(obj, i, items[i]);
    return obj;
}

PyObject *packetlog_read_records(PyObject *args) {
    Py_buffer view;
    Py_ssize_t pos;
    PyTypeObject *packet_type, *report_type;
    if (!PyArg_ParseTuple(args, "y*nO!O!:read_records", &view, &pos, &PyType_Type,
                          &packet_type, &PyType_Type, &report_type))
        return NULL;
    PyObject *out = NULL, *result = NULL;
    const char *bad = NULL;
    Py_ssize_t bad_at = 0;
    if (!PyType_IsSubtype(packet_type, &PyTuple_Type) ||
        !PyType_IsSubtype(report_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "read_records makes tuple subclasses");
        goto done;
    }
    if (pos < 0 || pos > view.len) {
        PyErr_SetString(PyExc_ValueError, "read_records: pos outside the buffer");
        goto done;
    }
    out = PyList_New(0);
    if (out == NULL)
        goto done;
    const unsigned char *data = view.buf;
    Py_ssize_t end = view.len;
    while (end - pos >= RECORD_LEN) {
        const unsigned char *r = data + pos;
        uint32_t length = get_u32(r);
        unsigned kind = r[4];
        if (length > MAX_BODY) {
            bad = "length";
            bad_at = pos;
            break;
        }
        Py_ssize_t start = pos + RECORD_LEN;
        if (end - start < (Py_ssize_t)length)
            break;  /* not all on disk yet (or cut there) */
        const unsigned char *body = data + start;
        size_t checked = length < FIELDS_LEN ? length : FIELDS_LEN;
        if (packetlog_crc32(body, checked, length + ((uint32_t)kind << 24)) != get_u32(r + 5)) {
            bad = "checksum";
            bad_at = pos;
            break;
        }
        pos = start + length;
        PyObject *record = NULL;
        if (kind == TYPE_PACKET && length >= FIELDS_LEN) {
            unsigned flags = body[20];
            PyObject *items[7] = {
                PyLong_FromLongLong((long long)get_u64(body)),
                PyLong_FromUnsignedLong(get_u32(body + 8)),
                PyLong_FromLong(flags & 1 ? 0x80 : 0),
                PyBool_FromLong(flags & 2),
                PyLong_FromUnsignedLong(get_u32(body + 21)),
                PyFloat_FromDouble(get_f64(body + 12)),
                PyBytes_FromStringAndSize((const char *)body + FIELDS_LEN,
                                          (Py_ssize_t)length - FIELDS_LEN)};
            record = make(packet_type, items, 7);
        } else if (kind == TYPE_SR && length == SR_LEN) {
            PyObject *items[3] = {PyLong_FromUnsignedLong(get_u32(body)),
                                  PyFloat_FromDouble(get_f64(body + 4)),
                                  PyLong_FromUnsignedLong(get_u32(body + 12))};
            record = make(report_type, items, 3);
        } else {
            continue;  /* a later version's record: skipped */
        }
        if (record == NULL || PyList_Append(out, record) < 0) {
            Py_XDECREF(record);
            goto done;
        }
        Py_DECREF(record);
    }
    result = Py_BuildValue("(Onzn)", out, pos, bad, bad_at);
done:
    Py_XDECREF(out);
    PyBuffer_Release(&view);
    return result;
}
