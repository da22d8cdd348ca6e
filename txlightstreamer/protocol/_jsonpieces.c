/*
 * The hot path's ``^P`` on a field's text cut at its scalars (`._jsontext.JsonText`), in C.
 *
 * ``replace(payload, pieces, leaves, old)`` is ``_jsontext.replace_compact`` followed by the
 * ``"".join(pieces)`` of its caller: the patched text, or None (``pieces`` unchanged) when
 * the payload is not a compact run of scalar ``replace`` operations on known leaves. Given
 * ``old``, the join of ``pieces`` before the patch, the text is ``old`` spliced where the
 * pieces change, a few long copies instead of one per piece.
 * ``recut(text, template)`` is ``_jsontext.recut``: ``text`` cut as ``template`` was, or
 * None. Both answer None as well where only a float's repr can tell whether a number is
 * written as encode_json writes it; `._hotpath` then runs the Python version, which is
 * the reference (the tests compare the two). Pure code, no Twisted: built with the
 * compiled hot path, absent otherwise.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Most operations one compact payload may carry here; longer ones go to Python. */
#define MAX_OPS 64

#define AT(i) PyUnicode_READ(kind, data, (i))

/* ``text`` holds the ASCII ``word`` at ``i``. */
static int
at_word(int kind, const void *data, Py_ssize_t n, Py_ssize_t i, const char *word)
{
    if (kind == PyUnicode_1BYTE_KIND) {
        size_t length = strlen(word);
        return i >= 0 && i <= n && (size_t)(n - i) >= length
               && memcmp((const char *)data + i, word, length) == 0;
    }
    for (; *word; word++, i++) {
        if (i >= n || AT(i) != (Py_UCS4)(unsigned char)*word)
            return 0;
    }
    return 1;
}

static int
is_digit(Py_UCS4 c)
{
    return c >= '0' && c <= '9';
}

/* ``_jsontext._shortest``: the number text[digits:end] (a dot at ``point``, no exponent) is
 * surely how repr writes its float. */
static int
shortest(int kind, const void *data, Py_ssize_t digits, Py_ssize_t point, Py_ssize_t end)
{
    if (point >= end || AT(point) != '.')
        return 0;
    if (AT(end - 1) == '0' && end - point != 2)
        return 0;
    if (AT(digits) == '0') {
        Py_ssize_t first = point + 1;
        while (first < end && AT(first) == '0')
            first++;
        if (first == end)
            return end - point == 2;
        if (first - point > 4)
            return 0;
        return end - first <= 15;
    }
    return (point - digits) + (end - point - 1) <= 15;
}

/* ``_jsontext._scalar_end(text, i, True)`` for ``i < n``: the index after the scalar, -1
 * if it is not one written as encode_json writes it, -2 if only repr could tell. */
static Py_ssize_t
scalar_end(int kind, const void *data, Py_ssize_t n, Py_ssize_t i)
{
    Py_UCS4 c = AT(i);
    if (c == '"') {
        for (i++; i < n; i++) {
            c = AT(i);
            if (c == '"')
                return i + 1;
            if (c == '\\' || c < 32)
                return -1;
        }
        return -1;
    }
    if (c == 't')
        return at_word(kind, data, n, i, "true") ? i + 4 : -1;
    if (c == 'f')
        return at_word(kind, data, n, i, "false") ? i + 5 : -1;
    if (c == 'n')
        return at_word(kind, data, n, i, "null") ? i + 4 : -1;
    Py_ssize_t start = i;
    if (c == '-')
        i++;
    Py_ssize_t digits = i;
    while (i < n && is_digit(AT(i)))
        i++;
    if (i == digits || (AT(digits) == '0' && i - digits > 1))
        return -1;
    Py_ssize_t whole = i;
    int exponent = 0;
    if (i < n && AT(i) == '.') {
        Py_ssize_t mark = ++i;
        while (i < n && is_digit(AT(i)))
            i++;
        if (i == mark)
            return -1;
    }
    if (i < n && (AT(i) | 32) == 'e') {
        exponent = 1;
        i++;
        if (i < n && (AT(i) == '+' || AT(i) == '-'))
            i++;
        Py_ssize_t mark = i;
        while (i < n && is_digit(AT(i)))
            i++;
        if (i == mark)
            return -1;
    }
    if (i == whole) { /* an integer: "-0" and huge ones are written otherwise */
        if ((c == '-' && i - start == 2 && AT(digits) == '0') || i - start > 400)
            return -1;
        return i;
    }
    if (exponent || !shortest(kind, data, digits, whole, i))
        return -2;
    return i;
}

/* JSON pointers read lately, by a hash of their characters: the patches of a field name the
 * same few leaves, and a str from here is neither made again nor hashed again. */
#define POINTERS 64

typedef struct {
    PyObject *pointers[POINTERS];
} State;

/* The str of ``payload[start:end]``, a pointer: a new reference, NULL on a failed
 * allocation. */
static PyObject *
pointer_str(PyObject *module, PyObject *payload, Py_ssize_t start, Py_ssize_t end)
{
    if (PyUnicode_KIND(payload) != PyUnicode_1BYTE_KIND)
        return PyUnicode_Substring(payload, start, end);
    const Py_UCS1 *chars = PyUnicode_1BYTE_DATA(payload) + start;
    Py_ssize_t length = end - start;
    size_t hash = (size_t)length;
    for (Py_ssize_t k = 0; k < length; k++)
        hash = hash * 31 + chars[k];
    PyObject **slot = &((State *)PyModule_GetState(module))->pointers[hash % POINTERS];
    PyObject *kept = *slot;
    if (kept != NULL && PyUnicode_GET_LENGTH(kept) == length
        && PyUnicode_KIND(kept) == PyUnicode_1BYTE_KIND
        && memcmp(PyUnicode_1BYTE_DATA(kept), chars, (size_t)length) == 0) {
        Py_INCREF(kept);
        return kept;
    }
    PyObject *pointer = PyUnicode_Substring(payload, start, end);
    if (pointer != NULL) {
        Py_INCREF(pointer);
        Py_XSETREF(*slot, pointer);
    }
    return pointer;
}

/* One replaced piece: its index, its new text (the last operation on it wins), and where
 * the piece it replaces starts in the old text, and its length. */
typedef struct {
    Py_ssize_t target;
    PyObject *value;
    Py_ssize_t offset;
    Py_ssize_t old_length;
} Splice;

/* Copy ``length`` characters of one kind: JSON pieces are short, and a loop beats a call to
 * memcpy for those. */
static void
copy_same_kind(void *to, const void *from, Py_ssize_t length, int kind)
{
    if (kind == PyUnicode_1BYTE_KIND && length <= 16) {
        Py_UCS1 *t = (Py_UCS1 *)to;
        const Py_UCS1 *f = (const Py_UCS1 *)from;
        for (Py_ssize_t j = 0; j < length; j++)
            t[j] = f[j];
    }
    else
        memcpy(to, from, (size_t)(length * kind));
}

/* "".join(pieces), each spliced piece replaced by its value; NULL with TypeError if a piece is
 * not a str. */
static PyObject *
join(PyObject *pieces, const Splice *splices, int count_splices)
{
    Py_ssize_t count = PyList_GET_SIZE(pieces), size = 0;
    Py_UCS4 widest = 127;
    int next = 0;
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *piece = PyList_GET_ITEM(pieces, k);
        if (next < count_splices && splices[next].target == k)
            piece = splices[next++].value;
        if (!PyUnicode_CheckExact(piece)) {
            PyErr_SetString(PyExc_TypeError, "pieces must be str");
            return NULL;
        }
        size += PyUnicode_GET_LENGTH(piece);
        Py_UCS4 most = PyUnicode_MAX_CHAR_VALUE(piece);
        if (most > widest)
            widest = most;
    }
    PyObject *out = PyUnicode_New(size, widest);
    if (out == NULL)
        return NULL;
    int out_kind = PyUnicode_KIND(out);
    void *out_data = PyUnicode_DATA(out);
    Py_ssize_t at = 0;
    next = 0;
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *piece = PyList_GET_ITEM(pieces, k);
        if (next < count_splices && splices[next].target == k)
            piece = splices[next++].value;
        Py_ssize_t length = PyUnicode_GET_LENGTH(piece);
        int kind = PyUnicode_KIND(piece);
        const void *data = PyUnicode_DATA(piece);
        if (kind == out_kind)
            copy_same_kind((char *)out_data + at * kind, data, length, kind);
        else {
            for (Py_ssize_t j = 0; j < length; j++)
                PyUnicode_WRITE(out_kind, out_data, at + j, AT(j));
        }
        at += length;
    }
    return out;
}

/* The ASCII ``old`` (the join of ``pieces``) with the spliced pieces replaced by their ASCII
 * values: a few copies of long runs instead of one per piece. 0 (nothing made) when ``old``
 * or a value is not ASCII, or when the pieces do not add up to ``old``. Only the length is
 * checked: the caller keeps ``old`` and ``pieces`` together (`._hotpath._patch`). */
static int
splice_old(PyObject *old, PyObject *pieces, Splice *splices, int count_splices, PyObject **out)
{
    if (!PyUnicode_IS_ASCII(old))
        return 0;
    for (int j = 0; j < count_splices; j++) {
        if (!PyUnicode_IS_ASCII(splices[j].value))
            return 0;
    }
    Py_ssize_t count = PyList_GET_SIZE(pieces), offset = 0;
    int next = 0;
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *piece = PyList_GET_ITEM(pieces, k);
        if (!PyUnicode_CheckExact(piece))
            return 0;
        Py_ssize_t length = PyUnicode_GET_LENGTH(piece);
        if (next < count_splices && splices[next].target == k) {
            splices[next].offset = offset;
            splices[next++].old_length = length;
        }
        offset += length;
    }
    Py_ssize_t size = PyUnicode_GET_LENGTH(old);
    if (offset != size)
        return 0;
    for (int j = 0; j < count_splices; j++)
        size += PyUnicode_GET_LENGTH(splices[j].value) - splices[j].old_length;
    PyObject *text = PyUnicode_New(size, 127);
    if (text == NULL)
        return -1;
    Py_UCS1 *to = PyUnicode_1BYTE_DATA(text);
    const Py_UCS1 *from = PyUnicode_1BYTE_DATA(old);
    Py_ssize_t at = 0, kept = 0;
    for (int j = 0; j < count_splices; j++) {
        Py_ssize_t run = splices[j].offset - kept;
        memcpy(to + at, from + kept, (size_t)run);
        at += run;
        Py_ssize_t length = PyUnicode_GET_LENGTH(splices[j].value);
        copy_same_kind(to + at, PyUnicode_1BYTE_DATA(splices[j].value), length,
                       PyUnicode_1BYTE_KIND);
        at += length;
        kept = splices[j].offset + splices[j].old_length;
    }
    memcpy(to + at, from + kept, (size_t)(PyUnicode_GET_LENGTH(old) - kept));
    *out = text;
    return 1;
}

static PyObject *
jsonpieces_replace(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if ((nargs != 3 && nargs != 4) || !PyUnicode_CheckExact(args[0])
        || !PyList_CheckExact(args[1]) || !PyDict_CheckExact(args[2])
        || (nargs == 4 && args[3] != Py_None && !PyUnicode_CheckExact(args[3]))) {
        PyErr_SetString(PyExc_TypeError,
                        "replace(payload: str, pieces: list, leaves: dict, old: str | None)");
        return NULL;
    }
    PyObject *payload = args[0], *pieces = args[1], *leaves = args[2];
    PyObject *old = nargs == 4 && args[3] != Py_None ? args[3] : NULL;
    int kind = PyUnicode_KIND(payload);
    const void *data = PyUnicode_DATA(payload);
    Py_ssize_t n = PyUnicode_GET_LENGTH(payload);
    Py_ssize_t targets[MAX_OPS], starts[MAX_OPS], ends[MAX_OPS];
    int ops = 0;
    if (n < 3 || AT(0) != '[')
        Py_RETURN_NONE;
    Py_ssize_t i = 1;
    for (;;) {
        if (ops == MAX_OPS || !at_word(kind, data, n, i, "{\"op\":\"replace\",\"path\":\""))
            Py_RETURN_NONE;
        i += 24;
        Py_ssize_t end = PyUnicode_FindChar(payload, '"', i, n, 1);
        if (end < 0) {
            if (end == -2)
                return NULL;
            Py_RETURN_NONE;
        }
        /* A pointer of leaves has no escape nor control character: if found, it is as read. */
        PyObject *pointer = pointer_str(module, payload, i, end);
        if (pointer == NULL)
            return NULL;
        PyObject *found = PyDict_GetItemWithError(leaves, pointer);
        Py_DECREF(pointer);
        if (found == NULL) {
            if (PyErr_Occurred())
                return NULL;
            Py_RETURN_NONE;
        }
        Py_ssize_t index = PyLong_Check(found) ? PyLong_AsSsize_t(found) : -1;
        if (index < 0 || index >= PyList_GET_SIZE(pieces)) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        if (!at_word(kind, data, n, end, "\",\"value\":"))
            Py_RETURN_NONE;
        i = end + 10;
        end = i < n ? scalar_end(kind, data, n, i) : -1;
        if (end < 0 || end + 1 >= n || AT(end) != '}')
            Py_RETURN_NONE;
        targets[ops] = index;
        starts[ops] = i;
        ends[ops] = end;
        ops++;
        Py_UCS4 c = AT(end + 1);
        i = end + 2;
        if (c == ']')
            break;
        if (c != ',')
            Py_RETURN_NONE;
    }
    if (i != n)
        Py_RETURN_NONE;
    /* A key of leaves that is not a str runs Python code in the lookups, which may have
     * shrunk pieces since an index was checked (found by review; tokenize's are all str). */
    for (int k = 0; k < ops; k++) {
        if (targets[k] >= PyList_GET_SIZE(pieces))
            Py_RETURN_NONE;
    }
    PyObject *values[MAX_OPS];
    for (int k = 0; k < ops; k++) {
        values[k] = PyUnicode_Substring(payload, starts[k], ends[k]);
        if (values[k] == NULL) {
            while (k--)
                Py_DECREF(values[k]);
            return NULL;
        }
    }
    /* One splice per piece, in piece order (insertion: a patch has a few operations). */
    Splice splices[MAX_OPS];
    int count_splices = 0;
    for (int k = 0; k < ops; k++) {
        int at = count_splices;
        while (at > 0 && splices[at - 1].target > targets[k])
            at--;
        if (at > 0 && splices[at - 1].target == targets[k]) {
            splices[at - 1].value = values[k];
            continue;
        }
        memmove(&splices[at + 1], &splices[at], (size_t)(count_splices - at) * sizeof(Splice));
        splices[at].target = targets[k];
        splices[at].value = values[k];
        count_splices++;
    }
    /* The text first, so that a failure leaves pieces as they were. */
    PyObject *text = NULL;
    int made = old != NULL ? splice_old(old, pieces, splices, count_splices, &text) : 0;
    if (made == 0)
        text = join(pieces, splices, count_splices);
    if (text != NULL) {
        for (int j = 0; j < count_splices; j++) {
            PyObject *replaced = PyList_GET_ITEM(pieces, splices[j].target);
            Py_INCREF(splices[j].value);
            PyList_SET_ITEM(pieces, splices[j].target, splices[j].value);
            Py_DECREF(replaced);
        }
    }
    for (int k = 0; k < ops; k++)
        Py_DECREF(values[k]);
    return text;
}

/* The text (``kind``, ``data``) holds ``word`` at ``i``, ``word`` fitting in it. A str is as
 * narrow as its widest character: one wider than the text cannot be in it. */
static int
same_chars(int kind, const void *data, Py_ssize_t i, PyObject *word)
{
    int word_kind = PyUnicode_KIND(word);
    Py_ssize_t length = PyUnicode_GET_LENGTH(word);
    const void *word_data = PyUnicode_DATA(word);
    if (word_kind == kind)
        return memcmp((const char *)data + i * kind, word_data, (size_t)(length * kind)) == 0;
    if (word_kind > kind)
        return 0;
    for (Py_ssize_t j = 0; j < length; j++) {
        if (AT(i + j) != PyUnicode_READ(word_kind, word_data, j))
            return 0;
    }
    return 1;
}

static PyObject *
jsonpieces_recut(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2 || !PyUnicode_CheckExact(args[0]) || !PyList_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "recut(text: str, template: list)");
        return NULL;
    }
    PyObject *text = args[0], *template = args[1];
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    Py_ssize_t count = PyList_GET_SIZE(template);
    if (count % 2 == 0) /* tokenize's pieces: between, scalar, ..., between */
        Py_RETURN_NONE;
    for (Py_ssize_t k = 0; k < count; k += 2) {
        if (!PyUnicode_CheckExact(PyList_GET_ITEM(template, k))) {
            PyErr_SetString(PyExc_TypeError, "template pieces must be str");
            return NULL;
        }
    }
    PyObject *pieces = PyList_New(count);
    if (pieces == NULL)
        return NULL;
    Py_ssize_t i = 0;
    for (Py_ssize_t k = 0;; k += 2) {
        PyObject *between = PyList_GET_ITEM(template, k);
        Py_ssize_t length = PyUnicode_GET_LENGTH(between);
        if (k == count - 1 && i + length != n)
            goto no;
        if (i + length > n)
            goto no;
        if (length && !same_chars(kind, data, i, between))
            goto no;
        Py_INCREF(between);
        PyList_SET_ITEM(pieces, k, between);
        i += length;
        if (k == count - 1)
            return pieces;
        Py_ssize_t end = i < n ? scalar_end(kind, data, n, i) : -1;
        if (end < 0)
            goto no;
        /* Most scalars of a new value are the last one's: share those. */
        PyObject *scalar = PyList_GET_ITEM(template, k + 1);
        if (PyUnicode_CheckExact(scalar) && PyUnicode_GET_LENGTH(scalar) == end - i
            && same_chars(kind, data, i, scalar))
            Py_INCREF(scalar);
        else {
            scalar = PyUnicode_Substring(text, i, end);
            if (scalar == NULL)
                goto fail;
        }
        PyList_SET_ITEM(pieces, k + 1, scalar);
        i = end;
    }
no:
    Py_DECREF(pieces); /* unset items are NULL, which list_dealloc skips */
    Py_RETURN_NONE;
fail:
    Py_DECREF(pieces);
    return NULL;
}

static PyMethodDef jsonpieces_methods[] = {
    {"replace", (PyCFunction)(void (*)(void))jsonpieces_replace, METH_FASTCALL,
     "replace(payload, pieces, leaves): the patched text, pieces updated; None if not taken."},
    {"recut", (PyCFunction)(void (*)(void))jsonpieces_recut, METH_FASTCALL,
     "recut(text, template): text cut as template was; None if it is not."},
    {NULL, NULL, 0, NULL},
};

static int
jsonpieces_clear(PyObject *module)
{
    State *state = PyModule_GetState(module);
    for (int k = 0; k < POINTERS; k++)
        Py_CLEAR(state->pointers[k]);
    return 0;
}

static void
jsonpieces_free(void *module)
{
    jsonpieces_clear((PyObject *)module);
}

static struct PyModuleDef jsonpieces_module = {
    PyModuleDef_HEAD_INIT, "_jsonpieces", "The hot path's ^P on a field's text cut at its scalars.",
    sizeof(State), jsonpieces_methods, NULL, NULL, jsonpieces_clear, jsonpieces_free,
};

PyMODINIT_FUNC
PyInit__jsonpieces(void)
{
    return PyModuleDef_Init(&jsonpieces_module);
}
