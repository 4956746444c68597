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
            case "--input": input = InputShape.parse(value) ?? []
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
/// the gradients computed from the whole batch and the exact reduction of the others (its
/// local passes: one rank). The trainer's own step
/// runs, on a batch of seeded random pixels.
func measure(_ network: Network, _ options: Options) throws
    -> (forward: [[Double]], backward: [[Double]], wholeBatch: [Double], reduction: [Double]) {
    let sampleSize = options.input.reduce(1, *)
    let rng = CounterRNG(seed: 2, stream: "bench-layers")
    let data = Dataset(name: "bench", shape: options.input, classes: 10,
                       pixels: (0..<(options.batch * sampleSize)).map { UInt8(truncatingIfNeeded: rng.integer(UInt64($0), below: 256)) },
                       labels: (0..<options.batch).map { UInt8($0 % 10) })
    let warmup = 10
    var training = TrainingOptions()
    training.hyperparameters.batchSize = options.batch
    training.hyperparameters.chunkSize = options.chunk
    training.hyperparameters.epochs = warmup + options.steps
    training.threads = options.threads
    let trainer = try Trainer(network: network, batches: ShuffledBatches(data, seed: 1), options: training,
                              communicator: SerialCommunicator())
    var forward = [[Double]](repeating: [], count: network.layers.count), backward = forward
    var wholeBatch: [Double] = [], reduction: [Double] = []
    for step in 0..<(warmup + options.steps) {
        let timed = step >= warmup
        var previous = now()
        func lap(_ into: inout [Double]) {
            let time = now()
            if timed { into.append(time - previous) }
            previous = time
        }
        _ = try trainer.trainStep { phase in
            switch phase {
            case .batchLoaded, .lossEvaluated: previous = now()
            case .forward(let layer): lap(&forward[layer])
            case .backward(let layer): lap(&backward[layer])
            case .wholeBatchGradients: lap(&wholeBatch)
            case .gradientsReduced: lap(&reduction)
            }
        }
    }
    return (forward, backward, wholeBatch, reduction)
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
    let (forward, backward, wholeBatch, reduction) = try measure(network, options)
    var total = 0.0
    print("layer                                      forward ms  backward ms")
    for (l, layer) in network.layers.enumerated() {
        let f = median(forward[l]) * 1000, b = median(backward[l]) * 1000
        total += f + b
        let name = network.fusedIntoPrevious[l] ? "  \(layer.description) (fused)" : layer.description
        print(name.padding(toLength: 42, withPad: " ", startingAt: 0), String(format: "%9.3f  %11.3f", f, b))
    }
    for (what, laps) in [("weight gradients from the whole batch", wholeBatch), ("exact gradient reduction (local passes)", reduction)] {
        let milliseconds = median(laps) * 1000
        total += milliseconds
        print(what.padding(toLength: 42, withPad: " ", startingAt: 0), String(repeating: " ", count: 9),
              String(format: " %11.3f", milliseconds))
    }
    print(String(format: "total %.3f ms per step of %d images: %.0f images/s (layers and reduction, medians of %d steps)",
                 total, options.batch, Double(options.batch) / total * 1000, options.steps))
} catch {
    FileHandle.standardError.write(Data("bench-layers: \(error)\n".utf8))
    exit(1)
}
