/*
 * ``split(data)`` is ``data.split(b"\r\n")`` for bytes: the transports cut each read into
 * TLCP lines with it. CPython's split looks for the two-byte separator with its general
 * search, about 1.4 ns a byte; this one finds each LF with memchr and keeps it when a CR
 * comes before it, which is the same cut (the CR of a separator is never the LF of the one
 * before) at a fraction of the cost on lines of a hundred bytes and more. Pure code, no
 * Twisted: built with the compiled hot path, absent otherwise (`._lines` then uses
 * ``bytes.split``).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static PyObject *
crlf_split(PyObject *module, PyObject *data)
{
    (void)module;
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "split(data: bytes)");
        return NULL;
    }
    const char *s = PyBytes_AS_STRING(data);
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    PyObject *lines = PyList_New(0);
    if (lines == NULL)
        return NULL;
    Py_ssize_t start = 0, search = 0;
    for (;;) {
        const char *lf = memchr(s + search, '\n', (size_t)(n - search));
        if (lf == NULL)
            break;
        Py_ssize_t at = lf - s;
        search = at + 1;
        if (at == start || s[at - 1] != '\r')
            continue; /* a bare LF belongs to the line */
        PyObject *line = PyBytes_FromStringAndSize(s + start, at - 1 - start);
        if (line == NULL || PyList_Append(lines, line) < 0) {
            Py_XDECREF(line);
            Py_DECREF(lines);
            return NULL;
        }
        Py_DECREF(line);
        start = search;
    }
    PyObject *rest;
    if (start == 0 && PyBytes_CheckExact(data)) {
        rest = data;
        Py_INCREF(rest);
    }
    else
        rest = PyBytes_FromStringAndSize(s + start, n - start);
    if (rest == NULL || PyList_Append(lines, rest) < 0) {
        Py_XDECREF(rest);
        Py_DECREF(lines);
        return NULL;
    }
    Py_DECREF(rest);
    return lines;
}

static PyMethodDef crlf_methods[] = {
    {"split", (PyCFunction)crlf_split, METH_O, "split(data): data.split(b'\\r\\n')."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef crlf_module = {
    PyModuleDef_HEAD_INIT, "_crlf", "data.split(b'\\r\\n'), memchr for each LF.",
    0, crlf_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__crlf(void)
{
    return PyModuleDef_Init(&crlf_module);
}
