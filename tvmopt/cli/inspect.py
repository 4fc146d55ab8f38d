"""``tvmopt inspect``: each layer, the structure found in it and the kernel it lowers to."""

from __future__ import annotations

from tvmopt.cli.common import input_shapes_option, kernels_option, positive_int, records_option


def add_parser(sub) -> None:
    insp = sub.add_parser(
        "inspect", help="show each layer of a model, the structure found in it and the kernel it lowers to",
        description="Import a model (.onnx, standard or with ai.tvmopt ops), run the compressed-layer pass "
                    "and print one row per weighted layer: its shape, the structure detected in its weights "
                    "(binary, ternary, shift, N:M, hashed, Fastfood...), the kernel it lowers to and its weight "
                    "memory before and after. Nothing is compiled or measured.")
    insp.add_argument("model", help="path to an .onnx file")
    insp.add_argument("--batch", type=positive_int, default=None,
                      help="batch size (default: the model's, or 1 for a dynamic batch axis)")
    input_shapes_option(insp)
    insp.add_argument("--min-weights", type=positive_int, default=256,
                      help="layers with fewer weights stay dense (default: 256)")
    insp.add_argument("--target", default="llvm",
                      help="target whose kernels to show (default: llvm); with a CUDA target, also each GPU "
                           "function and what schedules it (a DLight rule, or tvmopt's CUDA space for a compressed "
                           "kernel: tvmopt-space)")
    kernels_option(insp)
    records_option(insp)
    insp.set_defaults(func=cmd_inspect)


def cmd_inspect(args) -> int:
    from tvmopt.passes import DetectOptions
    from tvmopt.build.inspect import format_layers, format_products, inspect_gpu, inspect_lowered
    from tvmopt.target import parse_target

    options = DetectOptions(min_weights=args.min_weights, kernels=args.kernels, layout=args.layout,
                           winograd=args.winograd)
    spec = parse_target(args.target)
    functions, products = None, {}
    if spec.kind == "cuda":            # one lowering for the layers and the GPU functions
        layers, functions = inspect_gpu(args.model, args.target, batch=args.batch, options=options,
                                        records=args.records, shapes=args.input_shapes)
    else:
        lowered = inspect_lowered(args.model, batch=args.batch, records=args.records, options=options,
                                  target=args.target, shapes=args.input_shapes)
        layers, products = lowered.layers, lowered.products
    print(f"{args.model}: {len(layers)} weighted layer(s)")
    print(format_layers(layers))
    if products:
        print(format_products(products))
    if functions is not None:
        width = max(len(f) for f in functions)
        print(f"\n{len(functions)} GPU function(s) for {spec.key}, and what schedules each (a DLight rule, or "
              f"tvmopt's CUDA space for a compressed kernel):")
        for func, rule in sorted(functions.items()):
            print(f"  {func.ljust(width)}  {rule}")
    return 0
