/*
 * The hot path's ``^P`` on a field's JSON text cut at its scalars, in C: ``Cut``.
 *
 * ``Cut(text, pieces, leaves)`` keeps the cut ``_jsontext.tokenize`` made of ``text``
 * (``pieces``: between, scalar, ..., between; ``leaves``: each scalar's piece by JSON
 * pointer) as offsets into the text, with a table of the leaves' pointers that the cuts made
 * like it (``like``) share.
 * ``cut(old, payload)`` is ``_jsontext.recut`` (when ``old`` is a new value, not the text it
 * keeps) then ``_jsontext.replace_compact`` and the join: the patched text, which it then
 * keeps, a few long copies of the old text and none per piece; or None for any patch but a
 * compact run of scalar ``replace`` operations on known leaves, and where only a float's
 * repr can tell whether a number is written as encode_json writes it. `._hotpath` then runs
 * the Python version, which is the reference (the tests compare them). The line decoder
 * (`_updateline.c`) calls it through the capsule ``_C_API`` (`_jsonpieces.h`) with a
 * payload still in the line's bytes. Pure code, no Twisted: built with the compiled hot
 * path, absent otherwise.
 */
#include "_jsonpieces.h"
#include <stddef.h>
#include <structmember.h>

/* Most operations one compact payload may carry here; longer ones go to Python. */
#define MAX_OPS 64

#define AT(i) PyUnicode_READ(kind, data, (i))

/* Inlined where ``kind`` is a constant, so that AT reads bytes without a switch. */
#if defined(__GNUC__) || defined(__clang__)
#define KIND_INLINE static inline __attribute__((always_inline))
#else
#define KIND_INLINE static inline
#endif

/* ``text`` holds the ASCII ``word`` (``length`` characters) at ``i``. */
static inline int
at_chars(int kind, const void *data, Py_ssize_t n, Py_ssize_t i, const char *word, size_t length)
{
    if (i < 0 || i > n || (size_t)(n - i) < length)
        return 0;
    if (kind == PyUnicode_1BYTE_KIND)
        return memcmp((const char *)data + i, word, length) == 0;
    for (size_t k = 0; k < length; k++, i++) {
        if (AT(i) != (Py_UCS4)(unsigned char)word[k])
            return 0;
    }
    return 1;
}

/* `at_chars` of a literal: its length is known when compiled, and so is the memcmp. */
#define at_word(kind, data, n, i, word) at_chars((kind), (data), (n), (i), (word), sizeof(word) - 1)

static int
is_digit(Py_UCS4 c)
{
    return c >= '0' && c <= '9';
}

/* ``_jsontext._shortest``: the number text[digits:end] (a dot at ``point``, no exponent) is
 * surely how repr writes its float. */
KIND_INLINE int
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
KIND_INLINE Py_ssize_t
scalar_end_of(int kind, const void *data, Py_ssize_t n, Py_ssize_t i)
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

/* `scalar_end_of`, its one-byte case compiled on its own: most JSON texts are one-byte. */
static Py_ssize_t
scalar_end(int kind, const void *data, Py_ssize_t n, Py_ssize_t i)
{
    if (kind == PyUnicode_1BYTE_KIND)
        return scalar_end_of(PyUnicode_1BYTE_KIND, data, n, i);
    return scalar_end_of(kind, data, n, i);
}

/* One replaced piece: its index, its new text ``payload[start:end]`` (the last operation on a
 * piece wins), and where the piece it replaces starts in the old text, and its length. */
typedef struct {
    Py_ssize_t target;
    Py_ssize_t start, end;
    Py_ssize_t offset;
    Py_ssize_t old_length;
} Splice;

/* The pointers of a `Cut`'s leaves, by a hash of their characters, for a payload of one-byte
 * characters: found without a str of each pointer, nor a dict lookup. Only one-byte keys are
 * in it: a wider str is never equal to a run of one-byte characters. */
typedef struct {
    size_t hash;
    Py_ssize_t name, length; /* the pointer: ``names[name:name+length]`` */
    Py_ssize_t index;        /* its piece; -1: an empty slot */
} Leaf;

/* One block, never changed once built, shared by every cut made like the one it was built
 * for: the items of a table mostly hold documents of one shape (2 KB of slots for an order
 * book of 22 leaves, which each item's cut copied before). */
typedef struct {
    Py_ssize_t refs; /* the cuts holding it */
    size_t mask;     /* slots - 1, a power of two */
    char *names;     /* the pointers' characters, after the slots */
    Leaf slots[];
} LeafTable;

/* A pointer's hash, one character at a time (`hash_step`), then its length (`hash_end`):
 * `hash_chars` of a name, or on the way to a payload's closing quote in `parse_replaces_of`. */
static inline size_t
hash_step(size_t hash, Py_UCS1 c)
{
    return hash * 31 + c;
}

static inline size_t
hash_end(size_t hash, Py_ssize_t length)
{
    return hash ^ (size_t)length;
}

static size_t
hash_chars(const Py_UCS1 *chars, Py_ssize_t length)
{
    size_t hash = 0;
    for (Py_ssize_t k = 0; k < length; k++)
        hash = hash_step(hash, chars[k]);
    return hash_end(hash, length);
}

/* The index of the pointer ``payload[start:end]`` (found between quotes): -1 when ``payload``
 * has no such leaf, or -2 when the index is not a usable one, as ``leaves[pointer]`` would. */
static Py_ssize_t
table_find(const LeafTable *table, const Py_UCS1 *chars, Py_ssize_t length, size_t hash)
{
    for (size_t slot = hash & table->mask;; slot = (slot + 1) & table->mask) {
        const Leaf *leaf = &table->slots[slot];
        if (leaf->index == -1)
            return -1;
        if (leaf->hash == hash && leaf->length == length
            && memcmp(table->names + leaf->name, chars, (size_t)length) == 0)
            return leaf->index;
    }
}

/* A table of ``size`` slots (a power of two) and room for ``names`` characters of pointers,
 * held once; NULL on a failed allocation (an exception set). */
static LeafTable *
table_alloc(size_t size, Py_ssize_t names)
{
    if (size > ((size_t)PY_SSIZE_T_MAX - sizeof(LeafTable) - (size_t)names - 1) / sizeof(Leaf)) {
        PyErr_NoMemory();
        return NULL;
    }
    LeafTable *table = PyMem_Malloc(sizeof(LeafTable) + size * sizeof(Leaf) + (size_t)names + 1);
    if (table == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    table->refs = 1;
    table->mask = size - 1;
    table->names = (char *)(table->slots + size);
    return table;
}

/* Another holder of ``table`` (NULL: none). */
static LeafTable *
table_share(LeafTable *table)
{
    if (table != NULL)
        table->refs++;
    return table;
}

/* A holder of ``table`` (NULL: none) lets it go; the last one frees it. */
static void
table_release(LeafTable *table)
{
    if (table != NULL && --table->refs == 0)
        PyMem_Free(table);
}

/* ``leaves`` as a table in ``*out``, left NULL when a key is not a str or a value not an int
 * (the dict serves then). -1 on a failed allocation. */
static int
table_build(LeafTable **out, PyObject *leaves)
{
    Py_ssize_t entries = PyDict_GET_SIZE(leaves), names = 0, pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(leaves, &pos, &key, &value)) {
        if (!PyUnicode_CheckExact(key) || !PyLong_CheckExact(value))
            return 0;
        names += PyUnicode_GET_LENGTH(key);
    }
    size_t size = 8;
    while (size < (size_t)entries * 2)
        size *= 2;
    LeafTable *table = table_alloc(size, names);
    if (table == NULL)
        return -1;
    *out = table;
    Leaf *slots = table->slots;
    char *chars = table->names;
    for (size_t k = 0; k < size; k++)
        slots[k].index = -1;
    Py_ssize_t at = 0;
    pos = 0;
    while (PyDict_Next(leaves, &pos, &key, &value)) {
        if (PyUnicode_KIND(key) != PyUnicode_1BYTE_KIND)
            continue;
        Py_ssize_t length = PyUnicode_GET_LENGTH(key);
        const Py_UCS1 *name = PyUnicode_1BYTE_DATA(key);
        Py_ssize_t index = PyLong_AsSsize_t(value);
        if (index < 0) { /* as the dict's lookup takes it: not an index */
            PyErr_Clear();
            index = -2;
        }
        memcpy(chars + at, name, (size_t)length);
        size_t hash = hash_chars(name, length), slot = hash & (size - 1);
        while (slots[slot].index != -1) /* keys are distinct */
            slot = (slot + 1) & (size - 1);
        slots[slot].hash = hash;
        slots[slot].name = at;
        slots[slot].length = length;
        slots[slot].index = index;
        at += length;
    }
    return 0;
}

/* The index of the pointer ``data[start:end]`` in ``leaves`` (a dict lookup, which may run
 * Python code); -1 when it has none or not an index, -2 with an exception set. */
static Py_ssize_t
dict_find(PyObject *leaves, int kind, const void *data, Py_ssize_t start, Py_ssize_t end)
{
    PyObject *pointer = PyUnicode_FromKindAndData(kind, (const char *)data + start * kind,
                                                  end - start);
    if (pointer == NULL)
        return -2;
    PyObject *found = PyDict_GetItemWithError(leaves, pointer);
    Py_DECREF(pointer);
    if (found == NULL)
        return PyErr_Occurred() ? -2 : -1;
    Py_ssize_t index = PyLong_Check(found) ? PyLong_AsSsize_t(found) : -1;
    if (index < 0) {
        PyErr_Clear();
        return -1;
    }
    return index;
}

/* The operations of the payload ``data[0:n]`` when it is a compact run of scalar ``replace``
 * operations on pointers of ``leaves``: their count, with the index ``leaves`` gives each
 * (unchecked: a lookup may run Python code, so the caller checks them all after the last
 * one) and where its scalar is; 0 when the payload is not that (not taken), -1 with an
 * exception set. A one-byte payload's pointers are found in the cut's ``table`` when it has
 * one, each hashed on the way to its closing quote (`hash_step`); the dict serves
 * otherwise. Inlined with the one-byte kind a constant (`parse_replaces`). */
KIND_INLINE int
parse_replaces_of(int kind, const void *data, Py_ssize_t n, PyObject *leaves,
                  const LeafTable *table, Py_ssize_t *targets, Py_ssize_t *starts,
                  Py_ssize_t *ends)
{
    int ops = 0;
    if (n < 3 || AT(0) != '[')
        return 0;
    Py_ssize_t i = 1;
    for (;;) {
        if (ops == MAX_OPS || !at_word(kind, data, n, i, "{\"op\":\"replace\",\"path\":\""))
            return 0;
        i += 24;
        /* A pointer of leaves has no escape nor control character: if found, it is as read. */
        Py_ssize_t end = i, index;
        if (kind == PyUnicode_1BYTE_KIND && table != NULL) {
            const Py_UCS1 *chars = data;
            size_t hash = 0;
            while (end < n && chars[end] != '"')
                hash = hash_step(hash, chars[end++]);
            if (end == n)
                return 0;
            index = table_find(table, chars + i, end - i, hash_end(hash, end - i));
        }
        else {
            while (end < n && AT(end) != '"')
                end++;
            if (end == n)
                return 0;
            index = dict_find(leaves, kind, data, i, end);
            if (index == -2)
                return -1;
        }
        if (index < 0 || !at_word(kind, data, n, end, "\",\"value\":"))
            return 0;
        i = end + 10;
        end = i < n ? scalar_end_of(kind, data, n, i) : -1;
        if (end < 0 || end + 1 >= n || AT(end) != '}')
            return 0;
        targets[ops] = index;
        starts[ops] = i;
        ends[ops] = end;
        ops++;
        Py_UCS4 c = AT(end + 1);
        i = end + 2;
        if (c == ']')
            return i == n ? ops : 0;
        if (c != ',')
            return 0;
    }
}

/* `parse_replaces_of` of ``payload``, its one-byte case compiled on its own. */
static int
parse_replaces(const Text *payload, PyObject *leaves, const LeafTable *table,
               Py_ssize_t *targets, Py_ssize_t *starts, Py_ssize_t *ends)
{
    if (payload->kind == PyUnicode_1BYTE_KIND)
        return parse_replaces_of(PyUnicode_1BYTE_KIND, payload->data, payload->length, leaves,
                                 table, targets, starts, ends);
    return parse_replaces_of(payload->kind, payload->data, payload->length, leaves, table,
                             targets, starts, ends);
}

/* The operations as splices, one per piece, in piece order (insertion: a patch has a few
 * operations); their count. */
static int
order_splices(const Py_ssize_t *targets, const Py_ssize_t *starts, const Py_ssize_t *ends,
              int ops, Splice *splices)
{
    int count = 0;
    for (int k = 0; k < ops; k++) {
        int at = count;
        while (at > 0 && splices[at - 1].target > targets[k])
            at--;
        if (at == 0 || splices[at - 1].target != targets[k]) {
            for (int m = count; m > at; m--) /* a few: no call to memmove */
                splices[m] = splices[m - 1];
            count++;
            at++;
        }
        splices[at - 1].target = targets[k];
        splices[at - 1].start = starts[k];
        splices[at - 1].end = ends[k];
    }
    return count;
}

/* A field's text and its cut at its scalars as offsets: what ``replace_compact`` and
 * ``recut`` do to pieces, done without a str per piece. ``Cut(text, pieces, leaves)`` keeps
 * ``text`` (the join of ``pieces``, cut by ``_jsontext.tokenize`` with the ``leaves`` it
 * gave); a call moves it to the text it takes or makes. ``leaves`` is read once, into the
 * table: nothing changes it after tokenize. The text is written as encode_json writes it
 * (the hot path's texts are: its own, or checked by tokenize), so every scalar it holds is
 * one `recut_bytes` may take again without reading it. */
typedef struct {
    PyObject_HEAD
    PyObject *text;    /* the text described */
    PyObject *leaves;  /* JSON pointer -> index of a scalar piece (odd) */
    Py_ssize_t count;  /* pieces: between, scalar, ..., between (an odd count) */
    Py_ssize_t *ends;  /* where each piece ends in the text described */
    LeafTable *table;  /* leaves, for payloads of one-byte characters (shared); NULL: none */
    vectorcallfunc vectorcall; /* cut_vectorcall: called with no tuple of arguments */
} Cut;

static PyObject *cut_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                                PyObject *kwnames);

/* What a cut holds apart from its objects, freed. */
static void
parts_free(Py_ssize_t *ends, LeafTable *table)
{
    PyMem_Free(ends);
    table_release(table);
}

static int
cut_traverse(Cut *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->text);
    Py_VISIT(self->leaves);
    return 0;
}

static int
cut_clear(Cut *self)
{
    Py_CLEAR(self->text);
    Py_CLEAR(self->leaves);
    return 0;
}

static void
cut_dealloc(Cut *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    cut_clear(self);
    parts_free(self->ends, self->table);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

/* A new cut of ``type`` that takes ``ends``, ``table`` and the references to
 * ``text`` and ``leaves``: all given up when it cannot be made (NULL). */
static Cut *
cut_make(PyTypeObject *type, Py_ssize_t count, Py_ssize_t *ends, LeafTable *table,
         PyObject *text, PyObject *leaves)
{
    Cut *self = (Cut *)type->tp_alloc(type, 0);
    if (self == NULL) {
        parts_free(ends, table);
        Py_DECREF(text);
        Py_DECREF(leaves);
        return NULL;
    }
    self->count = count;
    self->ends = ends;
    self->table = table;
    self->vectorcall = cut_vectorcall;
    self->text = text;
    self->leaves = leaves;
    return self;
}

static PyObject *
cut_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *text, *pieces, *leaves;
    if ((kwargs != NULL && PyDict_GET_SIZE(kwargs))
        || !PyArg_UnpackTuple(args, "Cut", 3, 3, &text, &pieces, &leaves)
        || !PyUnicode_CheckExact(text) || !PyList_CheckExact(pieces)
        || !PyDict_CheckExact(leaves)) {
        PyErr_SetString(PyExc_TypeError, "Cut(text: str, pieces: list, leaves: dict)");
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(pieces);
    if (count % 2 == 0) {
        PyErr_SetString(PyExc_ValueError, "Cut(): pieces are between, scalar, ..., between");
        return NULL;
    }
    /* All is read before the object is allocated: an allocation may collect garbage, whose
     * finalizers may change pieces (found by review). */
    Py_ssize_t *ends = PyMem_New(Py_ssize_t, count);
    LeafTable *table = NULL;
    if (ends == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    Py_ssize_t at = 0;
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *piece = PyList_GET_ITEM(pieces, k);
        if (!PyUnicode_CheckExact(piece)) {
            PyErr_SetString(PyExc_TypeError, "Cut(): pieces must be str");
            goto fail;
        }
        at += PyUnicode_GET_LENGTH(piece);
        ends[k] = at;
    }
    if (at != PyUnicode_GET_LENGTH(text)) {
        PyErr_SetString(PyExc_ValueError, "Cut(): text is not the join of pieces");
        goto fail;
    }
    if (table_build(&table, leaves) < 0)
        goto fail;
    return (PyObject *)cut_make(type, count, ends, table, Py_NewRef(text), Py_NewRef(leaves));
fail:
    parts_free(ends, table);
    return NULL;
}

/* The characters ``a[i:i+length]`` and ``b[j:j+length]`` are the same. */
static int
same_run(int a_kind, const void *a, Py_ssize_t i, int b_kind, const void *b, Py_ssize_t j,
         Py_ssize_t length)
{
    if (a_kind == b_kind)
        return memcmp((const char *)a + i * a_kind, (const char *)b + j * b_kind,
                      (size_t)(length * a_kind)) == 0;
    for (Py_ssize_t k = 0; k < length; k++) {
        if (PyUnicode_READ(a_kind, a, i + k) != PyUnicode_READ(b_kind, b, j + k))
            return 0;
    }
    return 1;
}

/* How many bytes ``a`` and ``b`` have the same from the start, at most ``most``: eight at a
 * time, then the first differing one. */
static Py_ssize_t
same_length(const Py_UCS1 *a, const Py_UCS1 *b, Py_ssize_t most)
{
    Py_ssize_t k = 0;
    for (; k + 8 <= most; k += 8) {
        uint64_t x, y;
        memcpy(&x, a + k, 8);
        memcpy(&y, b + k, 8);
        if (x != y)
            break;
    }
    while (k < most && a[k] == b[k])
        k++;
    return k;
}

/* `recut` of one-byte texts, by runs: where ``t`` reads as ``p`` (found eight bytes at a
 * time), its pieces are those pieces, moved; only a scalar where they part is read. A scalar
 * in such a run is one the cut holds, which is written as encode_json writes it, and ends
 * there: in JSON what follows a scalar never goes on one. */
static int
recut_bytes(Py_ssize_t count, const Py_ssize_t *ends, const Py_UCS1 *t, Py_ssize_t n,
            const Py_UCS1 *p, Py_ssize_t *spare)
{
    Py_ssize_t k = 0, start = 0, moved = 0; /* piece k starts at start (p), start + moved (t) */
    for (;;) {
        Py_ssize_t i = start + moved, most = ends[count - 1] - start;
        Py_ssize_t edge = start + same_length(t + i, p + start, n - i < most ? n - i : most);
        while (k < count && (k % 2 == 0 ? ends[k] <= edge : ends[k] < edge)) {
            spare[k] = ends[k] + moved;
            start = ends[k++];
        }
        if (k == count)
            break;
        if (k % 2 == 0)
            return 0; /* a piece between scalars is not the same */
        i = start + moved;
        Py_ssize_t end = i < n ? scalar_end_of(PyUnicode_1BYTE_KIND, t, n, i) : -1;
        if (end < 0)
            return 0;
        spare[k] = end;
        moved = end - ends[k];
        start = ends[k++];
    }
    return ends[count - 1] + moved == n;
}

/* `_jsontext.recut` of the ``count`` pieces that end at ``ends`` in ``previous``: 1, with
 * where the pieces of ``text`` end in ``spare``, when ``text`` is cut as ``previous`` is: the
 * same pieces between its scalars, and scalars written as encode_json writes them; 0
 * otherwise (also where only a float's repr could tell). No Python code runs. */
static int
recut(Py_ssize_t count, const Py_ssize_t *ends, PyObject *previous, PyObject *text,
      Py_ssize_t *spare)
{
    if (PyUnicode_GET_LENGTH(previous) != ends[count - 1])
        return 0;
    int kind = PyUnicode_KIND(text), previous_kind = PyUnicode_KIND(previous);
    const void *data = PyUnicode_DATA(text), *previous_data = PyUnicode_DATA(previous);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text), i = 0, start = 0;
    if (kind == PyUnicode_1BYTE_KIND && previous_kind == PyUnicode_1BYTE_KIND) {
        if (!recut_bytes(count, ends, data, n, previous_data, spare))
            return 0;
    }
    else {
        for (Py_ssize_t k = 0; k < count; k++) {
            if (k % 2 == 0) {
                Py_ssize_t length = ends[k] - start;
                if (length > n - i
                    || !same_run(kind, data, i, previous_kind, previous_data, start, length))
                    return 0;
                i += length;
            }
            else {
                Py_ssize_t end = i < n ? scalar_end(kind, data, n, i) : -1;
                if (end < 0)
                    return 0;
                i = end;
            }
            spare[k] = i;
            start = ends[k];
        }
        if (i != n)
            return 0;
    }
    return 1;
}

/* Most pieces recut into a buffer on the stack (an order book has a few dozen). */
#define STACK_PIECES 256

/* `recut` on the cut: 1, the cut now describing ``text``, when ``text`` is cut as the text
 * described was; 0, the cut unchanged, otherwise. Only the cut's ends change: the caller
 * makes ``text`` the text described. -1 on a failed allocation (an exception set). */
static int
recut_into(Cut *self, PyObject *text)
{
    Py_ssize_t count = self->count, local[STACK_PIECES];
    Py_ssize_t *spare = count <= STACK_PIECES ? local : PyMem_New(Py_ssize_t, count);
    if (spare == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    int same = recut(count, self->ends, self->text, text, spare);
    if (same)
        memcpy(self->ends, spare, (size_t)count * sizeof(Py_ssize_t));
    if (spare != local)
        PyMem_Free(spare);
    return same;
}

/* ``shape.like(text)``: a new cut of ``text`` with the pieces and leaves of the text ``shape``
 * describes, when ``text`` is cut as that text is (`recut`: the same pieces between its
 * scalars, each scalar written as encode_json writes it); None otherwise. A field's first
 * patch takes its cut from another item's cut of the field this way, not from tokenize: the
 * items of a table mostly hold documents of one shape. */
static PyObject *
cut_like(PyObject *shape_object, PyObject *text)
{
    Cut *shape = (Cut *)shape_object;
    if (!PyUnicode_CheckExact(text))
        Py_RETURN_NONE;
    /* All is read before the object is allocated: an allocation may collect garbage, whose
     * finalizers may patch through ``shape``. */
    Py_ssize_t count = shape->count;
    Py_ssize_t *ends = PyMem_New(Py_ssize_t, count);
    if (ends == NULL)
        return PyErr_NoMemory();
    if (!recut(count, shape->ends, shape->text, text, ends)) {
        PyMem_Free(ends);
        Py_RETURN_NONE;
    }
    return (PyObject *)cut_make(Py_TYPE(shape), count, ends, table_share(shape->table),
                                Py_NewRef(text), Py_NewRef(shape->leaves));
}

/* `replace` on the cut of ``old``, the text described, of the ``payload`` (a str's characters,
 * or ASCII bytes of a line): a new reference to the patched text, the cut's ends now
 * describing it (the caller makes it the text described); None, the cut unchanged, when the
 * payload is not a compact run of scalar ``replace`` operations on known leaves; NULL with an
 * exception set. */
static PyObject *
replace_text(Cut *self, PyObject *old, const Text *payload)
{
    Py_ssize_t targets[MAX_OPS], starts[MAX_OPS], ends[MAX_OPS];
    PyObject *leaves = Py_NewRef(self->leaves); /* a lookup may run Python code */
    int ops = parse_replaces(payload, leaves, self->table, targets, starts, ends);
    Py_DECREF(leaves);
    if (ops <= 0) {
        if (ops < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    /* A lookup running Python code may have patched through this cut meanwhile. */
    if (old != self->text)
        Py_RETURN_NONE;
    Py_ssize_t count = self->count;
    Py_ssize_t *at_end = self->ends;
    Py_ssize_t size = PyUnicode_GET_LENGTH(old);
    if (size != at_end[count - 1])
        Py_RETURN_NONE;
    for (int k = 0; k < ops; k++) {
        if (targets[k] % 2 == 0 || targets[k] >= count)
            Py_RETURN_NONE; /* not a scalar piece */
    }
    Splice splices[MAX_OPS];
    int count_splices = order_splices(targets, starts, ends, ops, splices);
    for (int j = 0; j < count_splices; j++) {
        Py_ssize_t t = splices[j].target;
        splices[j].offset = at_end[t - 1];
        splices[j].old_length = at_end[t] - at_end[t - 1];
        size += (splices[j].end - splices[j].start) - splices[j].old_length;
    }
    int old_kind = PyUnicode_KIND(old), payload_kind = payload->kind;
    const void *old_data = PyUnicode_DATA(old), *payload_data = payload->data;
    int ascii = PyUnicode_IS_ASCII(old) && payload->ascii;
    /* ASCII: written in place. Otherwise in a buffer as wide as the widest, then made the
     * str its characters call for (a patch may take away the only wide one). */
    int kind = ascii ? PyUnicode_1BYTE_KIND : (old_kind > payload_kind ? old_kind : payload_kind);
    PyObject *text = NULL;
    void *to;
    if (ascii) {
        text = PyUnicode_New(size, 127);
        if (text == NULL)
            return NULL;
        to = PyUnicode_1BYTE_DATA(text);
    }
    else {
        to = PyMem_Malloc((size_t)(size > 0 ? size : 1) * (size_t)kind);
        if (to == NULL)
            return PyErr_NoMemory();
    }
    Py_ssize_t at = 0, kept = 0;
    for (int j = 0; j <= count_splices; j++) {
        Py_ssize_t run = (j < count_splices ? splices[j].offset : PyUnicode_GET_LENGTH(old))
                         - kept;
        copy_chars(to, kind, at, old_data, old_kind, kept, run);
        at += run;
        if (j == count_splices)
            break;
        Py_ssize_t length = splices[j].end - splices[j].start;
        copy_chars(to, kind, at, payload_data, payload_kind, splices[j].start, length);
        at += length;
        kept = splices[j].offset + splices[j].old_length;
    }
    if (!ascii) {
        text = PyUnicode_FromKindAndData(kind, to, size);
        PyMem_Free(to);
        if (text == NULL)
            return NULL;
    }
    /* The text is made: move the ends of the pieces from the first spliced one on. */
    Py_ssize_t shift = 0;
    for (int j = 0; j < count_splices; j++) {
        shift += (splices[j].end - splices[j].start) - splices[j].old_length;
        Py_ssize_t stop = j + 1 < count_splices ? splices[j + 1].target : count;
        if (shift) { /* a number of the same length moves nothing */
            for (Py_ssize_t k = splices[j].target; k < stop; k++)
                at_end[k] += shift;
        }
    }
    return text;
}

/* ``pieces()``: the pieces of the text described, a list of str. */
static PyObject *
cut_pieces(Cut *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *pieces = PyList_New(self->count);
    if (pieces == NULL)
        return NULL;
    Py_ssize_t start = 0;
    for (Py_ssize_t k = 0; k < self->count; k++) {
        PyObject *piece = PyUnicode_Substring(self->text, start, self->ends[k]);
        if (piece == NULL) {
            Py_DECREF(pieces);
            return NULL;
        }
        PyList_SET_ITEM(pieces, k, piece);
        start = self->ends[k];
    }
    return pieces;
}

/* The ``^P`` ``payload`` on ``old``, the field's value, when it is the text described, or a
 * new value cut as it was (recut first): the patched text, which the cut then describes;
 * None (the cut describing the text it described, or ``old``) for any patch but a compact
 * run of scalar ``replace`` operations on known leaves. */
static PyObject *
cut_patch(Cut *self, PyObject *old, const Text *payload)
{
    if (old != self->text) {
        int same = recut_into(self, old);
        if (same <= 0) {
            if (same < 0)
                return NULL;
            Py_RETURN_NONE;
        }
        Py_INCREF(old);
        Py_SETREF(self->text, old);
    }
    Py_INCREF(old); /* the text may be replaced while a lookup runs Python code */
    PyObject *text = replace_text(self, old, payload);
    Py_DECREF(old);
    if (text != NULL && text != Py_None) {
        Py_INCREF(text);
        Py_SETREF(self->text, text);
    }
    return text;
}

/* ``cut(old, payload)``: `cut_patch`. */
static PyObject *
cut_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    PyObject *old, *payload;
    if ((kwnames != NULL && PyTuple_GET_SIZE(kwnames)) || PyVectorcall_NARGS(nargsf) != 2
        || !PyUnicode_CheckExact(old = args[0]) || !PyUnicode_CheckExact(payload = args[1])) {
        PyErr_SetString(PyExc_TypeError, "cut(old: str, payload: str)");
        return NULL;
    }
    Text characters = text_of(payload);
    return cut_patch((Cut *)callable, old, &characters);
}

/* `cut_patch` of a payload still in its line: ASCII bytes without escapes (the capsule's). */
static PyObject *
cut_patch_ascii(PyObject *cut, PyObject *old, const char *payload, Py_ssize_t length)
{
    if (!PyUnicode_CheckExact(old))
        Py_RETURN_NONE; /* as cut(old, payload) would refuse it */
    Text characters = {payload, PyUnicode_1BYTE_KIND, 1, length};
    return cut_patch((Cut *)cut, old, &characters);
}

static PyObject *
cut_get_text(Cut *self, void *Py_UNUSED(closure))
{
    Py_INCREF(self->text);
    return self->text;
}

static PyObject *
cut_get_leaves(Cut *self, void *Py_UNUSED(closure))
{
    Py_INCREF(self->leaves);
    return self->leaves;
}

static PyGetSetDef cut_getset[] = {
    {"text", (getter)cut_get_text, NULL, "The text described.", NULL},
    {"leaves", (getter)cut_get_leaves, NULL, "JSON pointer -> index of its scalar piece.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef cut_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(Cut, vectorcall), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef cut_methods[] = {
    {"pieces", (PyCFunction)cut_pieces, METH_NOARGS, "pieces(): the pieces of the text described."},
    {"like", (PyCFunction)cut_like, METH_O,
     "like(text): a new cut of text with this cut's pieces and leaves, when text is cut as "
     "the text described is; None otherwise."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot cut_slots[] = {
    {Py_tp_new, cut_new},
    {Py_tp_dealloc, cut_dealloc},
    {Py_tp_traverse, cut_traverse},
    {Py_tp_clear, cut_clear},
    {Py_tp_methods, cut_methods},
    {Py_tp_getset, cut_getset},
    {Py_tp_members, cut_members},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_doc, "Cut(text, pieces, leaves): a field's text cut at its scalars, as offsets; "
                "cut(old, payload) patches it. pieces and leaves are _jsontext.tokenize's of "
                "text, which is written as encode_json writes it: a re-cut takes the scalars "
                "it keeps as they are."},
    {0, NULL},
};

static PyType_Spec cut_spec = {
    "txlightstreamer.protocol._jsonpieces.Cut", sizeof(Cut), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL, cut_slots,
};

static PyMethodDef jsonpieces_methods[] = {
    {NULL, NULL, 0, NULL},
};

static void
api_free(PyObject *capsule)
{
    JsonPiecesApi *api = PyCapsule_GetPointer(capsule, JSONPIECES_CAPSULE);
    if (api != NULL) {
        Py_XDECREF(api->cut_type);
        PyMem_Free(api);
    }
}

static int
jsonpieces_exec(PyObject *module)
{
    PyObject *cut_type = PyType_FromModuleAndSpec(module, &cut_spec, NULL);
    if (cut_type == NULL)
        return -1;
    int failed = PyModule_AddObjectRef(module, "Cut", cut_type);
    JsonPiecesApi *api = failed ? NULL : PyMem_Malloc(sizeof(JsonPiecesApi));
    if (api == NULL) {
        Py_DECREF(cut_type);
        if (!failed)
            PyErr_NoMemory();
        return -1;
    }
    api->cut_type = (PyTypeObject *)cut_type; /* the capsule's reference */
    api->patch_ascii = cut_patch_ascii;
    api->like = cut_like;
    PyObject *capsule = PyCapsule_New(api, JSONPIECES_CAPSULE, api_free);
    if (capsule == NULL) {
        Py_DECREF(cut_type);
        PyMem_Free(api);
        return -1;
    }
    failed = PyModule_AddObjectRef(module, "_C_API", capsule);
    Py_DECREF(capsule);
    return failed;
}

static PyModuleDef_Slot jsonpieces_slots[] = {
    {Py_mod_exec, jsonpieces_exec},
    {0, NULL},
};

static struct PyModuleDef jsonpieces_module = {
    PyModuleDef_HEAD_INIT, "_jsonpieces", "The hot path's ^P on a JSON text cut at its scalars.",
    0, jsonpieces_methods, jsonpieces_slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__jsonpieces(void)
{
    return PyModuleDef_Init(&jsonpieces_module);
}
