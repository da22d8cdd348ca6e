/*
 * TLCP-diff (tlcp.md 5.3) applied in one allocation: the hot path's ``^T``.
 *
 * ``apply(old, diff)`` is ``_hotpath._apply_diff`` for BMP-only strings: the result, or
 * None when the diff is bad or either string holds a character outside the BMP (there
 * TLCP counts UTF-16 units, not characters, and the general decoder takes over). A str
 * whose kind is not UCS4 is BMP-only by construction, so that check costs nothing.
 * The Python version allocates a list, a slice per section and the join; this one
 * walks the diff once (check and size, keeping its runs), finds the widest character
 * where a string is not ASCII, copies the runs, and allocates the result only. Pure code,
 * no Twisted: built with the package when a C compiler is there; `._hotpath` runs its
 * Python version otherwise.
 */
#include "_tlcpdiff.h"

static PyObject *
tlcpdiff_apply(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2 || !PyUnicode_CheckExact(args[0]) || !PyUnicode_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "apply(old: str, diff: str)");
        return NULL;
    }
    return tlcp_diff(args[0], args[1]);
}

static PyMethodDef tlcpdiff_methods[] = {
    {"apply", (PyCFunction)(void (*)(void))tlcpdiff_apply, METH_FASTCALL,
     "apply(old, diff): the TLCP-diff applied to old; None if it is bad or not BMP-only."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef tlcpdiff_module = {
    PyModuleDef_HEAD_INIT, "_tlcpdiff", "TLCP-diff in one allocation (the hot path's ^T).",
    0, tlcpdiff_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__tlcpdiff(void)
{
    return PyModuleDef_Init(&tlcpdiff_module);
}
