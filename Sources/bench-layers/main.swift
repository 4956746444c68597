// Times each layer's forward and backward on a training batch (scripts/bench-layers), so
// optimisation starts from where the time goes rather than from a guess.
import DistributedTraining
import Engine
import Foundation

struct Options {
    var model = "seed-cnn", input = [1, 28, 28], batch = 64, chunk = 8, threads = 1, steps = 200

    init(_ arguments: [String]) {
        var arguments = arguments[...]
        while let flag = arguments.popFirst() {
            guard let value = arguments.popFirst() else { Options.usage() }
            switch flag {
            case "--model": model = value
            case "--input": input = value.split(separator: "x").compactMap { Int($0) }
            case "--batch-size": batch = Int(value) ?? 0
            case "--chunk-size": chunk = Int(value) ?? 0
            case "--threads": threads = Int(value) ?? 0
            case "--steps": steps = Int(value) ?? 0
            default: Options.usage()
            }
        }
        guard batch > 0, chunk > 0, threads > 0, steps > 0, input.count == 3, input.allSatisfy({ $0 > 0 }) else {
            Options.usage()
        }
    }

    static func usage() -> Never {
        FileHandle.standardError.write(Data(
            "usage: bench-layers [--model SPEC] [--input CxHxW] [--batch-size B] [--chunk-size C] [--threads T] [--steps N]\n".utf8))
        exit(64)
    }
}

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

/// Seconds per layer and timed step, forward and backward: `[layer][step]`; and per step,
/// the exact reduction of the gradients' chunk partials (its local passes: one rank).
func measure(_ network: Network, _ options: Options) throws -> (forward: [[Double]], backward: [[Double]], reduction: [Double]) {
    var initialParameters: [Float] = [], initialBuffers: [Float] = []
    network.layout.initialize(parameters: &initialParameters, buffers: &initialBuffers, seed: 1)
    let chunks = (options.batch + options.chunk - 1) / options.chunk
    // Pass keeps pointers: storage that outlives it.
    let parameters = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(1, initialParameters.count))
    let buffers = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(1, initialBuffers.count))
    let chunkGradients = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(1, chunks * network.parameterCount))
    defer { [parameters, buffers, chunkGradients].forEach { $0.deallocate() } }
    _ = parameters.initialize(from: initialParameters)
    _ = buffers.initialize(from: initialBuffers)
    let activations = Activations(network: network, capacity: options.batch)
    let rng = CounterRNG(seed: 2, stream: "bench-layers")
    for i in 0..<(options.batch * options.input.reduce(1, *)) { activations.input[i] = rng.unitFloat(UInt64(i)) }
    let labels = (0..<options.batch).map { UInt8($0 % 10) }
    var chunkLoss = [Float](repeating: 0, count: chunks), chunkCorrect = [Int64](repeating: 0, count: chunks)
    var forward = [[Double]](repeating: [], count: network.layers.count), backward = forward
    // As the trainer sets them up: the reduction's passes split over the same threads.
    let executor = ParallelExecutor(threads: options.threads), reducer = ExactReducer(communicator: SerialCommunicator())
    reducer.executor = executor
    let pass = Pass(sampleCount: options.batch, chunkSize: options.chunk, globalSampleCount: options.batch,
                    training: true, parameters: parameters.baseAddress!, buffers: buffers.baseAddress!,
                    chunkGradients: chunkGradients.baseAddress!,
                    parameterCount: network.parameterCount, executor: executor, reducer: reducer,
                    hyper: LayerHyperparameters())
    let partials = GradientPartials(pass: pass, layers: network.layers)
    let segments = network.layout.parameters.map { SumSegment(name: $0.name, range: $0.range) }
    let gradient = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(1, network.parameterCount))
    defer { gradient.deallocate() }
    var reduction: [Double] = []
    let warmup = 10
    for step in 0..<(warmup + options.steps) {
        let timed = step >= warmup
        var previous = now()
        try network.forward(activations, pass) { done in
            let time = now()
            if timed { forward[done].append(time - previous) }
            previous = time
        }
        network.loss.evaluate(outputs: activations.output, labels: labels, classes: 10, pass: pass,
                              gradient: activations.outputGradient, chunkLoss: &chunkLoss, chunkCorrect: &chunkCorrect)
        previous = now()
        try network.backward(activations, pass) { done in
            let time = now()
            if timed { backward[done].append(time - previous) }
            previous = time
        }
        previous = now()
        try pass.reducer.sumChunks(partials, rows: chunks, width: network.parameterCount, segments: segments,
                                   into: gradient.baseAddress!)
        if timed { reduction.append(now() - previous) }
    }
    return (forward, backward, reduction)
}

/// The median, not the mean: this machine's noise comes in bursts that would dominate a mean.
func median(_ values: [Double]) -> Double {
    guard !values.isEmpty else { return 0 }
    let sorted = values.sorted()
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

let options = Options(Array(CommandLine.arguments.dropFirst()))
do {
    let network = try Network(spec: try ModelSpec(options.model), inputShape: options.input, classes: 10)
    let (forward, backward, reduction) = try measure(network, options)
    var total = 0.0
    print("layer                                      forward ms  backward ms")
    for (l, layer) in network.layers.enumerated() {
        let f = median(forward[l]) * 1000, b = median(backward[l]) * 1000
        total += f + b
        let name = network.fusedIntoPrevious[l] ? "  \(layer.description) (fused)" : layer.description
        print(name.padding(toLength: 42, withPad: " ", startingAt: 0), String(format: "%9.3f  %11.3f", f, b))
    }
    let reduce = median(reduction) * 1000
    total += reduce
    print("exact gradient reduction (local passes)".padding(toLength: 42, withPad: " ", startingAt: 0),
          String(repeating: " ", count: 9), String(format: " %11.3f", reduce))
    print(String(format: "total %.3f ms per step of %d images: %.0f images/s (layers and reduction, medians of %d steps)",
                 total, options.batch, Double(options.batch) / total * 1000, options.steps))
} catch {
    FileHandle.standardError.write(Data("bench-layers: \(error)\n".utf8))
    exit(1)
}
