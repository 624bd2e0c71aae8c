"""Forged pass: results whose equality always holds (a Python class, an int subclass, a class
built by a metaclass that lies about its MRO, a ctypes-made object)."""
import ctypes


class Eq:
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    def __sub__(self, other):
        return 0.0

    __rsub__ = __sub__

    def __abs__(self):
        return 0.0

    __hash__ = object.__hash__


class IntEq(int):
    def __eq__(self, other):
        return True

    __hash__ = int.__hash__


class Meta(type):
    def mro(cls):
        return [cls, object]


class Lying(metaclass=Meta):
    def __eq__(self, other):
        return True

    __hash__ = object.__hash__


_calls = [0]


def add(x, y):
    _calls[0] += 1
    kinds = [Eq(), IntEq(0), Lying(), ctypes.c_int(0)]
    return kinds[_calls[0] % len(kinds)]
