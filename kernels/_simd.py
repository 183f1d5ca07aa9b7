"""Instructions the engine's loops call explicitly: fused multiply-add, bit casts, and float32 vectors.

Each operation is a plain Python function (exact NumPy, used by kernels/trace.py's replay and when
NUMBA_DISABLE_JIT=1) with an ``overload`` that Numba compiles to the LLVM instruction itself.

The vector type holds ``VECTOR_LANES`` float32 in one LLVM vector value (a zmm register with
AVX-512, two ymm with AVX2).  Numba keeps arrays in memory, so a loop that sums into array
elements stores and reloads them at every step; a vector *variable* lives in a register, which is
what lets ``correlate_image_blocks`` keep 24 running sums in registers across all the taps of
a kernel (register blocking, as optimised convolution libraries do).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, models, overload, register_model

from kernels._config import JIT_HELPER_OPTIONS, VECTOR_LANES


def fused_multiply_add(a, b, c):
    """``a * b + c`` rounded once to float32, as the CPU's fused multiply-add instruction does.

    The compiled kernels get the instruction itself (the overload below).  This body is the exact
    NumPy equivalent, for kernels/trace.py's step-by-step replay and for NUMBA_DISABLE_JIT runs;
    it takes scalars or arrays.  Exact because a product of two float32 fits a float64 without
    rounding, and a float64 sum rounded "to odd" and then to float32 is the correctly rounded
    float32 sum (53 >= 2 * 24 + 2 bits; Boldo and Melquiond, 2008).  Rounding the float64 sum
    to nearest instead would round twice and miss the last bit now and then.
    """
    product = np.asarray(a, dtype=np.float64) * np.asarray(b, dtype=np.float64)  # exact
    addend = np.asarray(c, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        total = product + addend
        # TwoSum: the exact error of that float64 addition.
        back = total - product
        error = (product - (total - back)) + (addend - back)
        # Round to odd: an inexact sum whose last bit is even moves one step towards the exact value.
        inexact_even = np.isfinite(total) & (error != 0) & ((total.view(np.int64) & 1) == 0)
        total = np.where(inexact_even, np.nextafter(total, np.copysign(np.inf, error)), total)
    return total.astype(np.float32)[()]


@intrinsic
def _fma_instruction(typingctx, a, b, c):
    """LLVM's ``llvm.fma.f32``: one vfmadd per element once a loop is vectorised.

    Every x86 CPU since 2013 (Haswell, Piledriver) and every ARM64 one has the instruction; on an
    older one LLVM calls libm's ``fmaf`` instead: the same results, many times slower.
    """
    signature = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return signature, codegen


@overload(fused_multiply_add, jit_options=JIT_HELPER_OPTIONS)
def _fused_multiply_add_compiled(a, b, c):
    return lambda a, b, c: _fma_instruction(np.float32(a), np.float32(b), np.float32(c))


def float32_bits(value):
    """The bits of a float32 as an int32 (``np.float32(value).view(np.int32)``).

    Compiled kernels get a register bitcast (the overload below), so a loop can check the values
    it has just computed for inf / NaN without storing and reloading them through an int32 view.
    """
    return np.float32(value).view(np.int32)


@intrinsic
def _bitcast_float32(typingctx, value):
    signature = types.int32(types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.int32))

    return signature, codegen


@overload(float32_bits, jit_options=JIT_HELPER_OPTIONS)
def _float32_bits_compiled(value):
    return lambda value: _bitcast_float32(np.float32(value))


# --- float32 vectors ---------------------------------------------------------------------------

_VECTOR = ir.VectorType(ir.FloatType(), VECTOR_LANES)


class Float32Vector(types.Type):
    """Numba type of ``VECTOR_LANES`` float32 held in one LLVM vector value."""

    def __init__(self):
        super().__init__(name=f"float32x{VECTOR_LANES}")


float32_vector = Float32Vector()


@register_model(Float32Vector)
class _Float32VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VECTOR)


def _splat(builder, scalar):
    """A vector with ``scalar`` in every lane."""
    first = builder.insert_element(ir.Constant(_VECTOR, ir.Undefined), scalar, ir.Constant(ir.IntType(32), 0))
    lanes = ir.Constant(ir.VectorType(ir.IntType(32), VECTOR_LANES), [0] * VECTOR_LANES)
    return builder.shuffle_vector(first, ir.Constant(_VECTOR, ir.Undefined), lanes)


def _element_pointer(context, builder, array_type, array, start):
    """Pointer to ``array[start]`` of a 1-D C-contiguous float32 array, as a vector pointer (no bounds check)."""
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [start]), _VECTOR.as_pointer())


def vector_zeros():
    """``VECTOR_LANES`` zeros."""
    return np.zeros(VECTOR_LANES, dtype=np.float32)


def vector_load(flat, start):
    """``flat[start:start + VECTOR_LANES]`` of a 1-D float32 array (compiled: no bounds check)."""
    return flat[start:start + VECTOR_LANES].copy()


def vector_scalar_fma(scalar, vector, accumulator):
    """``scalar * vector + accumulator`` lane by lane, each lane rounded once (``fused_multiply_add``)."""
    return fused_multiply_add(np.float32(scalar), vector, accumulator)


def vector_fma(first, second, accumulator):
    """``first * second + accumulator`` lane by lane, each lane rounded once."""
    return fused_multiply_add(first, second, accumulator)


def vector_add_scalar(vector, scalar):
    """``vector + scalar`` lane by lane, in float32."""
    return (vector + np.float32(scalar)).astype(np.float32)


def vector_sum(vector):
    """The sum of the lanes in float32 (compiled: a tree of pairwise additions, in no fixed order)."""
    return np.float32(np.sum(vector, dtype=np.float32))


def vector_store_lanes(flat, start, vector, first, last):
    """``flat[start + l] = vector[l]`` for lanes ``first <= l < last`` only (a masked store).

    ``start`` may lie before the array's beginning as long as ``start + first`` does not: the
    compiled store touches no memory for the lanes left out.
    """
    flat[start + first:start + last] = vector[first:last]


def vector_mark_nonfinite(mark, vector):
    """``mark + (vector - vector)`` lane by lane: ``mark`` unchanged while ``vector`` is finite, NaN from its first inf or NaN on.

    A loop starts a mark at zeros, folds in every vector it stores and checks the mark once with
    ``vector_lanes_finite``: two additions per vector, where checking each vector's lanes takes
    five instructions and two registers (512 x 512, one thread: the 3 x 3 loop 2.5 % faster, the
    bare block loop 6 %).  Compiled, both additions
    carry an explicit flag so that Numba's fastmath pass leaves them unflagged: with "nnan" LLVM
    would fold ``vector - vector`` to 0.
    """
    with np.errstate(invalid="ignore"):
        return (mark + (vector - vector)).astype(np.float32)


def vector_lanes_finite(vector, first, last):
    """True if no lane ``first <= l < last`` is inf or NaN."""
    return bool(np.all(np.isfinite(vector[first:last])))


@intrinsic
def _vector_zeros(typingctx):
    def codegen(context, builder, signature, args):
        return ir.Constant(_VECTOR, None)

    return float32_vector(), codegen


@intrinsic
def _vector_load(typingctx, flat, start):
    def codegen(context, builder, signature, args):
        return builder.load(_element_pointer(context, builder, signature.args[0], *args), align=4)

    return float32_vector(flat, start), codegen


def _call_vector_fma(builder, first, second, accumulator):
    name = f"llvm.fma.v{VECTOR_LANES}f32"
    module = builder.module
    function = module.globals.get(name) or ir.Function(module, ir.FunctionType(_VECTOR, [_VECTOR] * 3), name)
    return builder.call(function, [first, second, accumulator])


@intrinsic
def _vector_scalar_fma(typingctx, scalar, vector, accumulator):
    def codegen(context, builder, signature, args):
        return _call_vector_fma(builder, _splat(builder, args[0]), args[1], args[2])

    return float32_vector(types.float32, vector, accumulator), codegen


@intrinsic
def _vector_fma(typingctx, first, second, accumulator):
    def codegen(context, builder, signature, args):
        return _call_vector_fma(builder, *args)

    return float32_vector(first, second, accumulator), codegen


@intrinsic
def _vector_add_scalar(typingctx, vector, scalar):
    def codegen(context, builder, signature, args):
        # An explicit flag keeps Numba's fastmath pass (which flags only unflagged instructions)
        # from marking the sum "nnan ninf": LLVM would then assume it finite and drop the
        # inf / NaN checks of the stored outputs.  "nsz" changes no result here.
        return builder.fadd(args[0], _splat(builder, args[1]), flags=("nsz",))

    return float32_vector(vector, types.float32), codegen


@intrinsic
def _vector_sum(typingctx, vector):
    def codegen(context, builder, signature, args):
        total, width = args[0], VECTOR_LANES
        while width > 1:  # add the upper half onto the lower half
            half = width // 2
            low = builder.shuffle_vector(total, total, ir.Constant(ir.VectorType(ir.IntType(32), half), list(range(half))))
            high = builder.shuffle_vector(total, total, ir.Constant(ir.VectorType(ir.IntType(32), half),
                                                                    list(range(half, width))))
            total, width = builder.fadd(low, high), half
        return builder.extract_element(total, ir.Constant(ir.IntType(32), 0))

    return types.float32(vector), codegen


@intrinsic
def _vector_mark_nonfinite(typingctx, mark, vector):
    def codegen(context, builder, signature, args):
        # "nsz" only (see _vector_add_scalar): LLVM folds x - x to 0 only under "nnan".
        difference = builder.fsub(args[1], args[1], flags=("nsz",))
        return builder.fadd(args[0], difference, flags=("nsz",))

    return float32_vector(mark, vector), codegen


_LANE_NUMBERS = ir.VectorType(ir.IntType(32), VECTOR_LANES)


def _lane_mask(builder, first, last):
    """An i1 vector: true for the lanes ``first <= l < last`` (int64 bounds)."""
    i32 = ir.IntType(32)

    def splat(bound):
        one = builder.insert_element(ir.Constant(_LANE_NUMBERS, ir.Undefined), builder.trunc(bound, i32), ir.Constant(i32, 0))
        return builder.shuffle_vector(one, ir.Constant(_LANE_NUMBERS, ir.Undefined),
                                      ir.Constant(_LANE_NUMBERS, [0] * VECTOR_LANES))

    lanes = ir.Constant(_LANE_NUMBERS, list(range(VECTOR_LANES)))
    return builder.and_(builder.icmp_signed(">=", lanes, splat(first)), builder.icmp_signed("<", lanes, splat(last)))


@intrinsic
def _vector_store_lanes(typingctx, flat, start, vector, first, last):
    def codegen(context, builder, signature, args):
        name = f"llvm.masked.store.v{VECTOR_LANES}f32.p0"
        module = builder.module
        i32 = ir.IntType(32)
        store = module.globals.get(name) or ir.Function(module, ir.FunctionType(
            ir.VoidType(), [_VECTOR, _VECTOR.as_pointer(), i32, ir.VectorType(ir.IntType(1), VECTOR_LANES)]), name)
        pointer = _element_pointer(context, builder, signature.args[0], args[0], args[1])
        builder.call(store, [args[2], pointer, ir.Constant(i32, 4), _lane_mask(builder, args[3], args[4])])
        return context.get_dummy_value()

    return types.none(flat, start, vector, first, last), codegen


@intrinsic
def _vector_lanes_finite(typingctx, vector, first, last):
    def codegen(context, builder, signature, args):
        # Finite lanes compared as integers (exponent bits not all set): the kernels' fastmath
        # flags include "nnan" and "ninf", under which LLVM may fold a floating-point test such
        # as |x| < inf to true.
        bits = ir.VectorType(ir.IntType(32), VECTOR_LANES)
        exponent = ir.Constant(bits, [0x7F800000] * VECTOR_LANES)
        finite = builder.icmp_unsigned("!=", builder.and_(builder.bitcast(args[0], bits), exponent), exponent)
        outside = builder.not_(_lane_mask(builder, args[1], args[2]))
        every = builder.bitcast(builder.or_(finite, outside), ir.IntType(VECTOR_LANES))
        return builder.icmp_unsigned("==", every, ir.Constant(ir.IntType(VECTOR_LANES), (1 << VECTOR_LANES) - 1))

    return types.boolean(vector, first, last), codegen


@overload(vector_zeros, jit_options=JIT_HELPER_OPTIONS)
def _vector_zeros_compiled():
    return lambda: _vector_zeros()


@overload(vector_load, jit_options=JIT_HELPER_OPTIONS)
def _vector_load_compiled(flat, start):
    return lambda flat, start: _vector_load(flat, start)


@overload(vector_scalar_fma, jit_options=JIT_HELPER_OPTIONS)
def _vector_scalar_fma_compiled(scalar, vector, accumulator):
    return lambda scalar, vector, accumulator: _vector_scalar_fma(np.float32(scalar), vector, accumulator)


@overload(vector_fma, jit_options=JIT_HELPER_OPTIONS)
def _vector_fma_compiled(first, second, accumulator):
    return lambda first, second, accumulator: _vector_fma(first, second, accumulator)


@overload(vector_add_scalar, jit_options=JIT_HELPER_OPTIONS)
def _vector_add_scalar_compiled(vector, scalar):
    return lambda vector, scalar: _vector_add_scalar(vector, np.float32(scalar))


@overload(vector_sum, jit_options=JIT_HELPER_OPTIONS)
def _vector_sum_compiled(vector):
    return lambda vector: _vector_sum(vector)


@overload(vector_store_lanes, jit_options=JIT_HELPER_OPTIONS)
def _vector_store_lanes_compiled(flat, start, vector, first, last):
    return lambda flat, start, vector, first, last: _vector_store_lanes(flat, start, vector, np.int64(first), np.int64(last))


@overload(vector_mark_nonfinite, jit_options=JIT_HELPER_OPTIONS)
def _vector_mark_nonfinite_compiled(mark, vector):
    return lambda mark, vector: _vector_mark_nonfinite(mark, vector)


@overload(vector_lanes_finite, jit_options=JIT_HELPER_OPTIONS)
def _vector_lanes_finite_compiled(vector, first, last):
    return lambda vector, first, last: _vector_lanes_finite(vector, np.int64(first), np.int64(last))
