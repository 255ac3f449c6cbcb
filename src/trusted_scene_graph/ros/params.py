"""ROS 2 parameters declared from the one config schema, with descriptors, ranges and validation on set."""

from __future__ import annotations

from collections.abc import Callable

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter

from trusted_scene_graph.config.schema import (
    BOOL,
    FLOAT,
    FLOAT_ARRAY,
    INT,
    SCHEMA,
    STRING,
    STRING_ARRAY,
    Config,
    ConfigError,
    ParamSpec,
    is_ros_builtin,
)

_ROS_TYPES = {
    BOOL: ParameterType.PARAMETER_BOOL,
    INT: ParameterType.PARAMETER_INTEGER,
    FLOAT: ParameterType.PARAMETER_DOUBLE,
    STRING: ParameterType.PARAMETER_STRING,
    STRING_ARRAY: ParameterType.PARAMETER_STRING_ARRAY,
    FLOAT_ARRAY: ParameterType.PARAMETER_DOUBLE_ARRAY,
}


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """The ROS descriptor of one schema entry (what ``ros2 param describe`` shows)."""
    constraints = []
    if spec.choices:
        constraints.append(f"one of {list(spec.choices)}")
    if spec.length is not None:
        constraints.append(f"exactly {spec.length} values")
    if spec.min is not None or spec.max is not None:
        constraints.append(f"each value in [{spec.min}, {spec.max}]")
    result = ParameterDescriptor(name=spec.name, type=_ROS_TYPES[spec.type], description=spec.full_description,
                                 additional_constraints="; ".join(constraints), read_only=spec.read_only)
    if spec.type == FLOAT and spec.min is not None and spec.max is not None:
        result.floating_point_range = [FloatingPointRange(from_value=float(spec.min), to_value=float(spec.max))]
    if spec.type == INT and spec.min is not None and spec.max is not None:
        result.integer_range = [IntegerRange(from_value=int(spec.min), to_value=int(spec.max), step=1)]
    return result


def declare_config(node: Node, config: Config) -> Config:
    """Declare every schema parameter with ``config``'s value as default and return the validated values.

    Values given to the node from outside (a launch file's parameter file, ``--ros-args -p``) take precedence
    over ``config``, as ROS users expect; the result is validated as a whole and raises :class:`ConfigError`.
    Call it before adding set-parameter callbacks: it sets the empty arrays' values itself.
    """
    values = {}
    overrides = given_overrides(node)
    for name, override in overrides.items():
        # `-p reward.shaping_scale_m:=1` arrives as an integer: typed as `ros2 param set`'s are (coerce_on_set), or
        # rclpy refuses to declare the float parameter with it, where --set and a parameter file take it.
        (coerced,) = coerce_on_set([override]) if name in SCHEMA else (override,)
        if coerced is not override:
            node._parameter_overrides[name] = overrides[name] = coerced  # rclpy has no public way to change one
    for name, spec in SCHEMA.items():
        value = config[name]
        override = overrides.get(name)
        # A parameter file's (or -p's) `[]` for an array whose default is not empty: as untyped as an empty default.
        empty_override = spec.type in _ARRAY_PARAMETER_TYPES and override is not None and \
            override.type_ == Parameter.Type.NOT_SET
        if empty_override or (isinstance(value, list) and not value):
            # rclpy would type an empty default as a byte array, and a parameter file's `[]` arrives untyped
            # (an empty YAML list has no element type, so rclpy leaves it unset); so declare the type explicitly,
            # and give an unset or untyped parameter the empty default, which is what `[]` means. Given as a value,
            # not merely read as one: a statically typed parameter without a value is missing from get_parameters
            # (`ros2 param get` fails, `ros2 param dump` comes back empty). rclpy has no way to declare a typed empty
            # array with its value, so it is declared writable, set, then made read-only if the schema says so.
            parameter_type = Parameter.Type(_ROS_TYPES[spec.type])
            writable = descriptor(spec)
            writable.read_only = False
            node.declare_parameter(name, parameter_type, writable)
            if node.get_parameter_or(name).type_ == Parameter.Type.NOT_SET:
                node.set_parameters([Parameter(name, parameter_type, [] if empty_override else value)])
            if spec.read_only:
                node.set_descriptor(name, descriptor(spec))
            values[name] = node.get_parameter(name).value
        else:
            node.declare_parameter(name, value, descriptor(spec))
            values[name] = node.get_parameter(name).value
    return Config(values)


def given_overrides(node: Node) -> dict[str, Parameter]:
    """The parameter values rcl's arguments give ``node`` (``--params-file``, ``-p``), by name, declared or not; an
    empty list among them is untyped (``Parameter.Type.NOT_SET``). rclpy keeps them in a private attribute and has
    no public way to read them without declaring each one (which fails on an untyped value)."""
    return dict(node._parameter_overrides)


# What a ROS array parameter's elements are typed as, by schema type (for an empty array, which has no element type).
_ARRAY_PARAMETER_TYPES = {STRING_ARRAY: Parameter.Type.STRING_ARRAY, FLOAT_ARRAY: Parameter.Type.DOUBLE_ARRAY}
_ARRAY_VALUE_TYPES = (Parameter.Type.BYTE_ARRAY, Parameter.Type.BOOL_ARRAY, Parameter.Type.INTEGER_ARRAY,
                      Parameter.Type.DOUBLE_ARRAY, Parameter.Type.STRING_ARRAY)


def coerce_on_set(parameters: list[Parameter]) -> list[Parameter]:
    """An ``add_pre_set_parameters_callback`` callback: give the schema's type to the values a user cannot type
    otherwise, before rclpy checks types against the descriptors. An integer for a float parameter (``ros2 param set
    /scene_graph reward.shaping_scale_m 1``) becomes a float, integers for a float array become floats, and an empty
    array of any type (``[]`` has no element type: it arrives as a byte or bool array) becomes an empty array of the
    parameter's type, and a float array that arrives as ``array.array`` (the parameter service's) becomes a list.
    Anything else is left to rclpy's type check and the schema's validation."""
    coerced = []
    for parameter in parameters:
        spec = SCHEMA.get(parameter.name)
        if spec is not None and spec.type == FLOAT and parameter.type_ == Parameter.Type.INTEGER:
            parameter = Parameter(parameter.name, Parameter.Type.DOUBLE, float(parameter.value))
        elif spec is not None and spec.type in _ARRAY_PARAMETER_TYPES and parameter.type_ in _ARRAY_VALUE_TYPES:
            if len(parameter.value) == 0:
                parameter = Parameter(parameter.name, _ARRAY_PARAMETER_TYPES[spec.type], [])
            elif spec.type == FLOAT_ARRAY and parameter.type_ in (Parameter.Type.INTEGER_ARRAY,
                                                                  Parameter.Type.DOUBLE_ARRAY):
                # Floats too: through the parameter service (ros2 param set) they arrive as array.array('d').
                parameter = Parameter(parameter.name, Parameter.Type.DOUBLE_ARRAY, [float(v) for v in parameter.value])
        coerced.append(parameter)
    return coerced


def schema_overrides(parameters: list[Parameter]) -> dict[str, object]:
    """The values of the schema's parameters among ``parameters`` by name, without rclpy's own (``use_sim_time``...):
    those are rclpy's to check and apply (its time source switches to /clock), not the schema's."""
    return {p.name: p.value for p in parameters if not is_ros_builtin(p.name)}


def validate_on_set(current: Callable[[], Config]) -> Callable[[list[Parameter]], SetParametersResult]:
    """An ``add_on_set_parameters_callback`` callback that rejects values the schema rejects, with the reason."""

    def callback(parameters: list[Parameter]) -> SetParametersResult:
        try:
            current().with_overrides(schema_overrides(parameters))
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    return callback
