/*
 * The values of a ``U`` line decoded straight from its bytes: the compiled hot path's row.
 *
 * ``decode(line, start, before, docs, base, patch, limit)`` is what
 * `._hotpath.UpdateRouter.feed` does with ``line[start:]`` (the values after
 * ``U,<sub>,<item>,``) for an item whose last row is the tuple ``before``: plain and
 * percent-escaped tokens, ``#``/``$``, empty tokens and ``^n`` runs (the last row's values),
 * ``^T`` (TLCP-diff, `_tlcpdiff.h`; an ASCII one without escapes read from the line's
 * bytes) and ``^P`` (the field's ``_jsonpieces.Cut`` in ``docs`` when it takes the patch,
 * an ASCII payload without escapes handed to it from the line's bytes through the module's
 * capsule, `_jsonpieces.h`; else ``patch(old, payload, docs, base + field, limit, tried)``,
 * `._hotpath._patch`, which keeps the field's text in ``docs``), no diff's value longer
 * than ``limit``. It returns the new row as a tuple, or None for anything the general
 * decoder must decode or report (bad UTF-8, a bad escape, run or diff, a wrong count). Each
 * token is decoded once, from the bytes: no decoded copy of the line, no list of tokens, no
 * list of values. Pure code, no Twisted: built with the compiled hot path, absent otherwise
 * (`._hotpath` then decodes the same way in Python).
 */
#include "_tlcpdiff.h"
#include "_jsonpieces.h"

/* What `_jsonpieces`'s capsule holds, or NULL when it was not built: a ``^P`` then takes a
 * str. The capsule is held for the life of the process (found by review: a pointer into a
 * capsule held by nothing else was freed with it), and the first found is kept: a module
 * executed again (another interpreter) does not replace it. */
static const JsonPiecesApi *pieces_api;
static PyObject *pieces_capsule;

/* Escaped tokens up to this size are unescaped on the stack. */
#define STACK_TOKEN 512

static int
hex_digit(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* No byte of ``bytes[0:size]`` above 127: eight at a time (diffs and JSON are long), the last
 * eight or four read overlapping what was read rather than one by one. */
static int
is_ascii(const char *bytes, Py_ssize_t size)
{
    if (size >= 8) {
        uint64_t word, seen = 0;
        for (Py_ssize_t k = 0; k + 8 < size; k += 8) {
            memcpy(&word, bytes + k, 8);
            seen |= word;
        }
        memcpy(&word, bytes + size - 8, 8);
        return !((seen | word) & UINT64_C(0x8080808080808080));
    }
    if (size >= 4) {
        uint32_t head, tail;
        memcpy(&head, bytes, 4);
        memcpy(&tail, bytes + size - 4, 4);
        return !((head | tail) & UINT32_C(0x80808080));
    }
    unsigned char seen = 0;
    for (Py_ssize_t k = 0; k < size; k++)
        seen |= (unsigned char)bytes[k];
    return seen < 128;
}

/* The str of the token ``bytes[0:size]`` (UTF-8 with ``%XX`` escapes of UTF-8 bytes): a new
 * reference, None (new reference) if it is bad, NULL on a failed allocation. As Python
 * does it: the raw bytes must be UTF-8, and so must the unescaped ones. */
static PyObject *
token_str(const char *bytes, Py_ssize_t size)
{
    const char *percent = memchr(bytes, '%', (size_t)size);
    PyObject *text;
    if (percent == NULL) {
        /* Most tokens are short ASCII (numbers, times): copied without the decoder's setup. */
        if (size > 1 && is_ascii(bytes, size)) {
            text = PyUnicode_New(size, 127);
            if (text != NULL)
                memcpy(PyUnicode_1BYTE_DATA(text), bytes, (size_t)size);
            return text;
        }
        text = PyUnicode_DecodeUTF8(bytes, size, NULL);
        if (text == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        return text;
    }
    for (Py_ssize_t k = 0; k < size; k++) {
        if ((unsigned char)bytes[k] > 127) { /* raw UTF-8 with escapes: check the raw bytes */
            PyObject *raw = PyUnicode_DecodeUTF8(bytes, size, NULL);
            if (raw == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
                    return NULL;
                PyErr_Clear();
                Py_RETURN_NONE;
            }
            Py_DECREF(raw);
            break;
        }
    }
    char stack[STACK_TOKEN] = {0};
    char *out = size <= STACK_TOKEN ? stack : PyMem_Malloc((size_t)size);
    if (out == NULL)
        return PyErr_NoMemory();
    Py_ssize_t length = 0, k = 0;
    text = NULL;
    while (k < size) {
        unsigned char c = (unsigned char)bytes[k];
        if (c != '%') {
            out[length++] = (char)c;
            k++;
            continue;
        }
        int hi = k + 2 < size ? hex_digit((unsigned char)bytes[k + 1]) : -1;
        int lo = k + 2 < size ? hex_digit((unsigned char)bytes[k + 2]) : -1;
        if (hi < 0 || lo < 0)
            goto bad;
        out[length++] = (char)(hi * 16 + lo);
        k += 3;
    }
    text = PyUnicode_DecodeUTF8(out, length, NULL);
    if (text == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
        goto bad;
    goto done;
bad:
    PyErr_Clear();
    text = Py_None;
    Py_INCREF(text);
done:
    if (out != stack)
        PyMem_Free(out);
    return text;
}

/* n for a ``^n`` token (``bytes`` after the ``^``); 0 if it is not one. */
static Py_ssize_t
run_length(const char *bytes, Py_ssize_t size)
{
    if (size < 1 || size > 6)
        return 0;
    Py_ssize_t n = 0;
    for (Py_ssize_t k = 0; k < size; k++) {
        unsigned char c = (unsigned char)bytes[k];
        if (c < '0' || c > '9')
            return 0;
        n = n * 10 + (c - '0');
    }
    return n;
}

/* Where ``docs`` keeps the cut a field's first patch may be made like (by the field's index
 * in the row): far below every other key (a field's, and ``-1 -`` that). */
#define SHAPE_KEY(index) (PY_SSIZE_T_MIN + (index))

/* A cut of ``old`` made like the one ``docs`` keeps as the shape of field ``index``, then kept
 * in ``docs`` at ``key``: a new reference, or NULL for none (an exception set on an error). */
static PyObject *
shaped_cut(PyObject *docs, PyObject *key, Py_ssize_t index, PyObject *old)
{
    PyObject *shape_key = PyLong_FromSsize_t(SHAPE_KEY(index));
    if (shape_key == NULL)
        return NULL;
    PyObject *shape = PyDict_GetItemWithError(docs, shape_key);
    Py_DECREF(shape_key);
    if (shape == NULL || Py_TYPE(shape) != pieces_api->cut_type)
        return NULL;
    Py_INCREF(shape);
    PyObject *cut = pieces_api->like(shape, old);
    Py_DECREF(shape);
    if (cut == Py_None)
        Py_CLEAR(cut);
    else if (cut != NULL && PyDict_SetItem(docs, key, cut) < 0)
        Py_CLEAR(cut);
    return cut;
}

/* The cut ``patch`` left in ``docs`` at ``key``, if it did, kept as the shape of field
 * ``index`` when that has none yet. -1 with an exception set. */
static int
keep_shape(PyObject *docs, PyObject *key, Py_ssize_t index)
{
    PyObject *cut = PyDict_GetItemWithError(docs, key);
    if (cut == NULL || Py_TYPE(cut) != pieces_api->cut_type)
        return PyErr_Occurred() ? -1 : 0;
    PyObject *shape_key = PyLong_FromSsize_t(SHAPE_KEY(index));
    if (shape_key == NULL)
        return -1;
    Py_INCREF(cut);
    PyObject *shape = PyDict_SetDefault(docs, shape_key, cut);
    Py_DECREF(cut);
    Py_DECREF(shape_key);
    return shape == NULL ? -1 : 0;
}

/* A ``^P`` of field ``index``: the field's kept cut patches it when it can (a callable
 * ``docs`` entry, a ``_jsonpieces.Cut``: ``cut(old, payload)``, None for what it leaves to
 * ``patch``), or ``patch(old, payload, docs, key, limit, tried)`` (``tried``: the cut was
 * called, and is not called again). A field with no kept cut takes one made like another
 * item's (`shaped_cut`), and the first cut ``patch`` makes of a field is kept for that
 * (`keep_shape`). The payload is ``payload``, or when NULL the ASCII bytes without
 * escapes ``bytes[0:size]``, which a cut takes as they are: a str of them is made only for
 * ``patch``. A new reference, NULL on an error. */
static PyObject *
apply_patch(PyObject *docs, Py_ssize_t index, Py_ssize_t field, PyObject *old,
            const char *bytes, Py_ssize_t size, PyObject *payload, PyObject *patch,
            PyObject *limit, Py_ssize_t longest)
{
    PyObject *key = PyLong_FromSsize_t(field);
    if (key == NULL)
        return NULL;
    PyObject *kept = PyDict_GetItemWithError(docs, key);
    PyObject *value = NULL, *tried = Py_False, *made = NULL, *shaped = NULL;
    if (kept == NULL && !PyErr_Occurred() && pieces_api != NULL)
        kept = shaped = shaped_cut(docs, key, index, old);
    if (kept != NULL && payload == NULL && pieces_api != NULL
        && Py_TYPE(kept) == pieces_api->cut_type) {
        tried = Py_True;
        Py_INCREF(kept);
        value = pieces_api->patch_ascii(kept, old, bytes, size);
        Py_DECREF(kept);
    }
    else if (kept != NULL && Py_TYPE(kept)->tp_call != NULL) {
        if (payload == NULL && (payload = made = token_str(bytes, size)) == NULL) {
            Py_DECREF(key);
            return NULL;
        }
        tried = Py_True;
        Py_INCREF(kept);
        PyObject *args[2] = {old, payload};
        value = PyObject_Vectorcall(kept, args, 2, NULL);
        Py_DECREF(kept);
    }
    if (value == Py_None)
        Py_CLEAR(value);
    else if (value != NULL && PyUnicode_Check(value) && PyUnicode_GET_LENGTH(value) > longest
             && PyDict_DelItem(docs, key) < 0) /* refused: not kept either, as patch does */
        PyErr_Clear();
    if (value == NULL) {
        if (PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_Exception)) /* an interrupt goes through */
                goto done;
            PyErr_Clear(); /* patch decides, and reports */
        }
        if (payload == NULL && (payload = made = token_str(bytes, size)) == NULL)
            goto done;
        PyObject *call[6] = {old, payload, docs, key, limit, tried};
        value = PyObject_Vectorcall(patch, call, 6, NULL);
        /* The shape only saves later work: a failure to keep it leaves the value as it is
         * (an interrupt still goes through). */
        if (value != NULL && pieces_api != NULL && keep_shape(docs, key, index) < 0) {
            if (PyErr_ExceptionMatches(PyExc_Exception))
                PyErr_Clear();
            else
                Py_CLEAR(value);
        }
    }
done:
    Py_XDECREF(shaped);
    Py_XDECREF(made);
    Py_DECREF(key);
    return value;
}

static PyObject *
updateline_decode(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 7 || !PyBytes_CheckExact(args[0]) || !PyLong_CheckExact(args[1])
        || !PyTuple_CheckExact(args[2]) || !PyDict_CheckExact(args[3])
        || !PyLong_CheckExact(args[4]) || !PyLong_CheckExact(args[6])) {
        PyErr_SetString(PyExc_TypeError,
                        "decode(line: bytes, start: int, before: tuple, docs: dict, base: int, "
                        "patch, limit: int)");
        return NULL;
    }
    PyObject *line = args[0], *before = args[2], *docs = args[3], *patch = args[5];
    PyObject *limit = args[6];
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    Py_ssize_t base = PyLong_AsSsize_t(args[4]);
    Py_ssize_t longest = PyLong_AsSsize_t(limit);
    if ((start == -1 || base == -1 || longest == -1) && PyErr_Occurred())
        return NULL;
    const char *s = PyBytes_AS_STRING(line);
    Py_ssize_t n = PyBytes_GET_SIZE(line);
    if (start < 0 || start > n) {
        PyErr_SetString(PyExc_ValueError, "start out of the line");
        return NULL;
    }
    Py_ssize_t num_fields = PyTuple_GET_SIZE(before);
    PyObject *row = PyTuple_New(num_fields);
    if (row == NULL)
        return NULL;
    /* Out of the collector's sight while it has empty slots: ``patch`` runs Python code. */
    PyObject_GC_UnTrack(row);
    int atomic = 1; /* only str and None: no cycle possible, the tuple stays untracked */
    Py_ssize_t i = 0, p = start;
    for (;;) {
        const char *token = s + p;
        const char *bar = memchr(token, '|', (size_t)(n - p));
        Py_ssize_t size = bar ? bar - token : n - p;
        if (i >= num_fields)
            goto refuse; /* more values than fields */
        PyObject *value;
        if (size == 0) { /* unchanged */
            value = PyTuple_GET_ITEM(before, i);
            Py_INCREF(value);
            if (value != Py_None && !PyUnicode_CheckExact(value))
                atomic = 0;
        }
        else if (token[0] == '^') {
            char kind = size > 1 ? token[1] : 0;
            if (kind == 'T' || kind == 'P') {
                PyObject *old = PyTuple_GET_ITEM(before, i);
                if (!PyUnicode_Check(old))
                    goto refuse; /* a diff of null */
                int plain = memchr(token + 2, '%', (size_t)(size - 2)) == NULL
                            && is_ascii(token + 2, size - 2);
                if (plain && kind == 'T') {
                    /* The commonest diff: applied from the line's bytes, no str of it. */
                    Text diff = {token + 2, PyUnicode_1BYTE_KIND, 1, size - 2};
                    value = tlcp_diff_text(old, &diff);
                }
                else if (plain) /* a cut takes it from the line's bytes too */
                    value = apply_patch(docs, i, base + i, old, token + 2, size - 2, NULL,
                                        patch, limit, longest);
                else {
                    PyObject *payload = token_str(token + 2, size - 2);
                    if (payload == NULL)
                        goto error;
                    if (payload == Py_None) {
                        Py_DECREF(payload);
                        goto refuse;
                    }
                    if (kind == 'T')
                        value = tlcp_diff(old, payload);
                    else
                        value = apply_patch(docs, i, base + i, old, NULL, 0, payload, patch,
                                            limit, longest);
                    Py_DECREF(payload);
                }
                if (value == NULL)
                    goto error;
                if (!PyUnicode_Check(value) || PyUnicode_GET_LENGTH(value) > longest) {
                    Py_DECREF(value);
                    goto refuse; /* a bad diff (None) or one too long */
                }
                if (!PyUnicode_CheckExact(value))
                    atomic = 0;
            }
            else {
                Py_ssize_t run = run_length(token + 1, size - 1);
                if (run == 0 || i + run > num_fields)
                    goto refuse;
                for (Py_ssize_t k = 0; k < run; k++, i++) {
                    value = PyTuple_GET_ITEM(before, i);
                    Py_INCREF(value);
                    if (value != Py_None && !PyUnicode_CheckExact(value))
                        atomic = 0;
                    PyTuple_SET_ITEM(row, i, value);
                }
                goto next;
            }
        }
        else if (size == 1 && token[0] == '#') {
            value = Py_None;
            Py_INCREF(value);
        }
        else if (size == 1 && token[0] == '$') {
            value = PyUnicode_New(0, 0);
            if (value == NULL)
                goto error;
        }
        else {
            value = token_str(token, size);
            if (value == NULL)
                goto error;
            if (value == Py_None) {
                Py_DECREF(value);
                goto refuse;
            }
        }
        PyTuple_SET_ITEM(row, i, value);
        i++;
    next:
        if (bar == NULL)
            break;
        p = bar - s + 1;
    }
    if (i != num_fields)
        goto refuse;
    if (!atomic)
        PyObject_GC_Track(row);
    return row;
error:
    /* An Exception (a failed allocation, say): the general decoder decodes the line again.
     * Anything else (KeyboardInterrupt, SystemExit) goes on up, as from Python. */
    if (!PyErr_ExceptionMatches(PyExc_Exception)) {
        Py_DECREF(row);
        return NULL;
    }
    PyErr_Clear();
refuse:
    Py_DECREF(row); /* fields not set are NULL, which tupledealloc skips */
    Py_RETURN_NONE;
}

static PyMethodDef updateline_methods[] = {
    {"decode", (PyCFunction)(void (*)(void))updateline_decode, METH_FASTCALL,
     "decode(line, start, before, docs, base, patch, limit): the new row, or None."},
    {NULL, NULL, 0, NULL},
};

static int
updateline_exec(PyObject *module)
{
    /* Not PyCapsule_Import: it looks the module up as attributes of its package, which the
     * package being imported (this module is imported from it) does not have yet. */
    if (pieces_capsule == NULL) {
        PyObject *pieces = PyImport_ImportModule(JSONPIECES_MODULE), *capsule = NULL;
        if (pieces != NULL) {
            capsule = PyObject_GetAttrString(pieces, "_C_API");
            Py_DECREF(pieces);
        }
        if (capsule != NULL && !PyCapsule_IsValid(capsule, JSONPIECES_CAPSULE))
            Py_CLEAR(capsule); /* another build's layout: a ^P takes a str */
        else if (capsule != NULL) {
            pieces_api = PyCapsule_GetPointer(capsule, JSONPIECES_CAPSULE);
            if (pieces_api == NULL) {
                Py_DECREF(capsule);
                return -1;
            }
            pieces_capsule = capsule; /* never released */
        }
        else if (PyErr_ExceptionMatches(PyExc_ImportError)
                 || PyErr_ExceptionMatches(PyExc_AttributeError))
            PyErr_Clear(); /* built without it (or another build of it): a ^P takes a str */
        else
            return -1;
    }
    /* For the tests: whether a cut takes a ^P from the line's bytes. */
    return PyModule_AddObjectRef(module, "CUT_BYTES", pieces_api != NULL ? Py_True : Py_False);
}

static PyModuleDef_Slot updateline_slots[] = {
    {Py_mod_exec, updateline_exec},
    {0, NULL},
};

static struct PyModuleDef updateline_module = {
    PyModuleDef_HEAD_INIT, "_updateline", "The values of a U line decoded from its bytes.",
    0, updateline_methods, updateline_slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__updateline(void)
{
    return PyModuleDef_Init(&updateline_module);
}
