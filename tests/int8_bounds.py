"""How far an int8 model of the tiny test network may be from the fp32 one, derived from
the model's own quantization parameters (LiteRT full-integer or ONNX Runtime QDQ).

The network (tests/test_quantize.py `TinyNet`, as the export lowers it):
  t1 = u * c1;  t2 = t1 - c2;  t3 = t2 * c3      (c1 = 1/255, c2 = mean, c3 = 1/std)
  t4 = relu(conv3x3(t3, W) + b);  t5 = sum over pixels of t4;  logits = t5 @ V + v
(the mean's 1/(H W) is folded into V by the converter). In the int8 model every tensor
t1..t5, logits is requantized to an int8 grid of scale s_t, and every constant is stored
on a grid: int8 (per tensor or per output channel, scale s_c) or int32 for biases.

Errors: the quantized image t0 (scale s_0) and every requantization adds at most
(1/2 + 1/64) s_t per element: rounding to the nearest grid point (s/2) after a rescaling
whose own arithmetic (fp32 in XNNPACK and ONNX Runtime, relative error 2^-23; fixed-point
multipliers of >= 16 fractional bits in XNNPACK's int8 add) is off by < 2^-16 of at most
2^9 steps of each of two operands, i.e. < s/64. On the calibration images every fp32 activation lies in its calibrated range,
so clipping only moves a value towards the fp32 one. No integer sum saturates: ONNX
Runtime's u8 x s8 kernels on x86 without VNNI add pairs of products in int16 (VPMADDUBSW),
which the export's 7-bit ONNX weights keep below 2^15 (test_quantize.py checks them).
A stored constant is within s_c / 2 of the fp32 one; a constant kept in fp32 (ONNX
Runtime's Sub) and the uint8 image on its step-1 grid are exact.

To first order the logit error is the sum of those errors times the logit's derivative
with respect to each (autodiff of the fp32 network, per image). With every error at its
worst and aligned with the derivative's sign:
  |d logit_k| <= sum_t (1/2 + 1/64) s_t sum_i |d logit_k / d t_i|
               + sum_c sum_j (s_c,j / 2) |d logit_k / d c_j|  + flips,
where `flips` covers ReLU units whose pre-activation is within its own first-order error
bound E_i of zero (their derivative may switch): sum_i |d logit_k / d t4_i| E_i. Only
products of two errors (relative size ~1/100 of the terms kept) are left out.
"""
import jax
import jax.numpy as jnp
import numpy as np

REQUANT = 0.5 + 1 / 64  # a requantization's error, in steps of the output scale
ACTIVATIONS = ("t0", "t1", "t2", "t3", "t4", "t5", "logits")
CONSTANTS = ("c1", "c2", "c3", "W", "b", "V", "v")


def fp32_constants(params, mean, std, hw):
  """The fp32 values of the constants, in the lowered network's form."""
  return {"c1": jnp.float32(1 / 255), "c2": jnp.asarray(mean, jnp.float32),
          "c3": 1 / jnp.asarray(std, jnp.float32),
          "W": jnp.asarray(params["Conv_0"]["kernel"]), "b": jnp.asarray(params["Conv_0"]["bias"]),
          "V": jnp.asarray(params["Dense_0"]["kernel"]) / hw,
          "v": jnp.asarray(params["Dense_0"]["bias"])}


def _pre(c, d, u):
  t3 = (((u + d["t0"]) * c["c1"] + d["t1"]) - c["c2"] + d["t2"]) * c["c3"] + d["t3"]
  y = jax.lax.conv_general_dilated(t3[None], c["W"], (1, 1), ((1, 1), (1, 1)),
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))[0]
  return y + c["b"]


def _logits(c, d, u):
  t4 = jax.nn.relu(_pre(c, d, u)) + d["t4"]
  return (t4.sum((0, 1)) + d["t5"]) @ c["V"] + c["v"] + d["logits"]


def _weighted(jac, scales):
  """sum over the perturbed tensors of scale * |d / d tensor| (jac: name -> [K, ...])."""
  total = 0.0
  for name, s in scales.items():
    j = jnp.abs(jac[name])
    total = total + (j * s).reshape(j.shape[0], -1).sum(1)
  return total


def bound(consts, image_shape, act_scales, const_scales, images):
  """[N, num_classes] first-order bounds (module doc). `act_scales`: name -> s_t
  (0 for an exact tensor); `const_scales`: name -> per-element half-step (s_c / 2,
  broadcastable to the constant)."""
  h, w, _ = image_shape
  zeros = {"t0": jnp.zeros(image_shape), "t1": jnp.zeros(image_shape), "t2": jnp.zeros(image_shape),
           "t3": jnp.zeros(image_shape), "t4": jnp.zeros((h, w, consts["W"].shape[-1])),
           "t5": jnp.zeros(consts["W"].shape[-1]), "logits": jnp.zeros(consts["v"].shape)}
  acts = {k: REQUANT * act_scales[k] for k in ACTIVATIONS}
  upstream = {k: acts[k] for k in ("t0", "t1", "t2", "t3")}

  def one(u):
    u = u.astype(jnp.float32)
    jd, jc = jax.jacrev(_logits, argnums=(1, 0))(consts, zeros, u)
    first = _weighted(jd, acts) + _weighted(jc, const_scales)
    pd, pc = jax.jacrev(_pre, argnums=(1, 0))(consts, zeros, u)  # [H, W, C, ...]
    flat = lambda j: {k: v.reshape(-1, *v.shape[3:]) for k, v in j.items()}
    e_pre = (_weighted(flat(pd), upstream)
             + _weighted(flat(pc), {k: const_scales[k] for k in ("c1", "c2", "c3", "W", "b")}))
    pre = _pre(consts, zeros, u).reshape(-1)
    near = (jnp.abs(pre) <= e_pre).astype(jnp.float32)
    flips = (jnp.abs(jd["t4"]).reshape(jd["t4"].shape[0], -1) * near * e_pre).sum(1)
    return first + flips

  return np.asarray(jax.jit(jax.vmap(one))(jnp.asarray(images)))


# ------------------------------------------------------------------ the scales of a model


def _input_step(scale, zero_point):
  """The uint8 image (integers) quantized with scale 1 and an integer zero point: exact."""
  return 0.0 if scale == 1.0 and float(zero_point) == int(zero_point) else scale


def _per_channel(scales, ndim, axis):
  s = np.asarray(scales, np.float64)
  shape = [1] * ndim
  if s.size > 1:
    shape[axis] = -1
  return s.reshape(shape)


def tflite_scales(interpreter):
  """(act_scales, const half-steps) of the LiteRT int8 model of the tiny network; the
  conv/dense weights are [O, ...] there, returned in the JAX layouts (HWIO, [in, out])."""
  details = {t["index"]: t for t in interpreter.get_tensor_details()}
  ops = interpreter._get_ops_details()  # pylint: disable=protected-access
  ops = [o for o in ops if o["op_name"] != "DELEGATE"]
  produced = {int(o) for op in ops for o in op["outputs"]}
  inputs = {int(d["index"]) for d in interpreter.get_input_details()}

  def s(i):
    return np.asarray(details[i]["quantization_parameters"]["scales"], np.float64)

  def const(op):
    return [int(i) for i in op["inputs"] if i >= 0 and int(i) not in produced | inputs]

  names = [o["op_name"] for o in ops]
  assert names == ["CAST", "QUANTIZE", "MUL", "SUB", "MUL", "CONV_2D", "SUM",
                   "FULLY_CONNECTED", "DEQUANTIZE"], names
  out = lambda op: float(s(int(op["outputs"][0]))[0])
  act = dict(zip(ACTIVATIONS, [out(ops[k]) for k in (1, 2, 3, 4, 5, 6, 7)]))
  zero = details[int(ops[1]["outputs"][0])]["quantization_parameters"]["zero_points"][0]
  act["t0"] = _input_step(act["t0"], zero)
  cst = {}
  for name, op in (("c1", ops[2]), ("c2", ops[3]), ("c3", ops[4])):
    cst[name] = float(np.max(s(const(op)[0]))) / 2
  w, b = const(ops[5])
  cst["W"] = _per_channel(s(w), 4, 3) / 2  # [O] -> HWIO's last axis
  cst["b"] = s(b) / 2
  fw, fb = const(ops[7])
  cst["V"] = _per_channel(s(fw), 2, 1) / 2  # FC weights [out, in] -> V [in, out]
  cst["v"] = s(fb) / 2
  return act, cst


def onnx_scales(model):
  """(act_scales, const half-steps) of the ONNX Runtime QDQ int8 model of the tiny
  network. Re-quantizations at an unchanged scale (around Transpose) are exact."""
  from onnx import numpy_helper  # pylint: disable=g-import-not-at-top
  init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
  dq = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
  consumers = {}
  for n in model.graph.node:
    for i in n.input:
      consumers.setdefault(i, []).append(n)

  def requant(name):  # the scale of the QuantizeLinear right after tensor `name`
    q = [n for n in consumers.get(name, []) if n.op_type == "QuantizeLinear"]
    return float(init[q[0].input[1]]) if q else 0.0

  def half_step(name, ndim, axis):
    if name in dq and dq[name].input[0] in init:
      return _per_channel(init[dq[name].input[1]], ndim, axis) / 2
    assert name in init, name  # an fp32 constant: exact
    return np.zeros([1] * ndim)

  nodes = [n for n in model.graph.node if n.op_type in ("Mul", "Sub", "Conv", "ReduceSum",
                                                        "MatMul", "Gemm", "Add")]
  kinds = [n.op_type for n in nodes]
  assert kinds[:5] == ["Mul", "Sub", "Mul", "Conv", "ReduceSum"], kinds
  mul1, sub, mul2, conv, rsum, *head = nodes
  last = head[-1].output[0]
  cast = next(n for n in model.graph.node if n.op_type == "Cast")
  q0 = next(n for n in consumers[cast.output[0]] if n.op_type == "QuantizeLinear")
  act = {"t0": _input_step(float(init[q0.input[1]]), init[q0.input[2]]),
         "t1": requant(mul1.output[0]), "t2": requant(sub.output[0]),
         "t3": requant(mul2.output[0]), "t4": requant(conv.output[0]),
         "t5": requant(rsum.output[0]), "logits": requant(last)}
  cst = {"c1": float(np.max(half_step(mul1.input[1], 1, 0))),
         "c2": float(np.max(half_step(sub.input[1], 1, 0))),
         "c3": float(np.max(half_step(mul2.input[1], 1, 0)))}
  # ONNX conv weights [O, I, kh, kw] -> HWIO's last axis
  cst["W"] = half_step(conv.input[1], 1, 0).reshape(1, 1, 1, -1)
  cst["b"] = half_step(conv.input[2], 1, 0).reshape(-1) if len(conv.input) > 2 else 0.0
  mm = head[0]
  cst["V"] = half_step(mm.input[1], 2, 1)  # MatMul B [in, out], per output column
  if mm.op_type == "Gemm" and len(mm.input) > 2:
    cst["v"] = half_step(mm.input[2], 1, 0).reshape(-1)
  elif len(head) > 1:  # MatMul + Add(bias)
    add = head[1]
    cst["v"] = half_step(next(i for i in add.input if i != mm.output[0]), 1, 0).reshape(-1)
  else:
    cst["v"] = 0.0
  return act, cst
