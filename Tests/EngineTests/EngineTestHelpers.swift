import Engine
import Foundation
import TestSupport
import XCTest

// Helpers used by several files of EngineTests only (the cross-target ones live in TestSupport).

/// Deterministic values uniform in (−scale, scale).
func randomFloats(_ count: Int, seed: UInt64, stream: String = "test", scale: Float = 1) -> [Float] {
    let rng = CounterRNG(seed: seed, stream: stream)
    return (0..<count).map { (2 * rng.unitFloat(UInt64($0)) - 1) * scale }
}

enum EngineErrorKind { case model, data, checkpoint, nonFinite, output }

extension EngineError {
    var kind: EngineErrorKind {
        switch self {
        case .invalidModel: return .model
        case .invalidData: return .data
        case .invalidCheckpoint: return .checkpoint
        case .nonFinite: return .nonFinite
        case .output: return .output
        }
    }
}

/// Asserts that `expression` throws an `EngineError` of `kind` whose message contains `substring`.
func assertThrows<T>(_ kind: EngineErrorKind, containing substring: String, _ expression: @autoclosure () throws -> T,
                     file: StaticString = #filePath, line: UInt = #line) {
    do {
        _ = try expression()
        XCTFail("expected an error containing '\(substring)', but nothing was thrown", file: file, line: line)
    } catch let error as EngineError {
        XCTAssertEqual(error.kind, kind, "wrong kind of error: \(error)", file: file, line: line)
        XCTAssertTrue(error.description.contains(substring), "'\(error)' does not mention '\(substring)'", file: file, line: line)
    } catch {
        XCTFail("expected an EngineError, got \(error)", file: file, line: line)
    }
}

/// Runs `body` with a pass over `samples` samples and no parameters (for losses and
/// parameter-free layers outside a harness).
func withPass<R>(samples: Int, chunkSize: Int, threads: Int = 1, _ body: (Pass) throws -> R) rethrows -> R {
    let scratch = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    defer { scratch.deallocate() }
    let pass = Pass(samples: .init(count: samples, chunkSize: chunkSize, globalCount: samples),
                    state: .init(parameters: scratch, buffers: scratch,
                                 parameterCount: 0),
                    training: true, executor: ParallelExecutor(threads: threads), reducer: ExactReducer(communicator: SerialCommunicator()), hyper: LayerHyperparameters())
    return try body(pass)
}

/// The mean loss, the gradient with respect to the outputs and the number of correct
/// predictions of `loss` over `outputs` (one row of `classes` per label).
func evaluateLoss(_ loss: LossFunction, outputs: [Float], labels: [UInt8], classes: Int, labelSmoothing: Float = 0,
                  chunkSize: Int, threads: Int = 1) -> (loss: Double, gradient: [Float], correct: Int64) {
    let samples = labels.count
    let chunks = (samples + chunkSize - 1) / chunkSize
    var gradient = [Float](repeating: .nan, count: outputs.count)
    var chunkLoss = [Float](repeating: .nan, count: chunks)
    var chunkCorrect = [Int64](repeating: -1, count: chunks)
    withPass(samples: samples, chunkSize: chunkSize, threads: threads) { pass in
        loss.evaluate(outputs: outputs, labels: labels, classes: classes, labelSmoothing: labelSmoothing, pass: pass,
                      gradient: &gradient, chunkLoss: &chunkLoss, chunkCorrect: &chunkCorrect)
    }
    return (chunkLoss.reduce(0) { $0 + Double($1) } / Double(samples), gradient, chunkCorrect.reduce(0, +))
}

extension LayerHarness {
    /// Writes `values` into the named tensor of `layout` (a parameter or a buffer).
    func set(_ name: String, _ values: [Float], layout: ParameterLayout) {
        let t = layout.tensor(name)
        precondition(values.count == t.count, "\(name): \(values.count) values for \(t.count) elements")
        switch t.kind {
        case .parameter: parameters.replaceSubrange(t.range, with: values)
        case .buffer: buffers.replaceSubrange(t.range, with: values)
        }
    }

    func gradient(_ name: String, in gradients: [Float], layout: ParameterLayout) -> [Float] {
        Array(gradients[layout.tensor(name).range])
    }
}

/// How much the process's peak resident memory grew while `body` ran (Linux: the peak is
/// reset through /proc/self/clear_refs first, so this is the body's own peak over the start).
func peakMemoryGrowth(_ body: () throws -> Void) rethrows -> Int {
    func field(_ name: String) -> Int {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix(name + ":") } ?? ""
        return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) * 1024
    }
    try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
    let before = field("VmHWM")
    try body()
    return field("VmHWM") - before
}
