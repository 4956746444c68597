import ArgumentParser
import Engine
import Foundation

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a model's layers, output shapes and parameter counts.",
        discussion: """
        Model spec tokens, joined by '-': conv<out>k<kernel>[s<stride>][p<padding>], bn, relu, gelu, \
        tanh, maxpool<k>[s<stride>], avgpool<k>[s<stride>], flatten, fc<out>, fc (to the class \
        count), logsoftmax (last; the loss becomes NLL).

        With a checkpoint file, prints its manifest (after verifying the whole file) instead.

        Examples:
          swift-cnn-train inspect --model seed-cnn
          swift-cnn-train inspect runs/checkpoint-000000500.scnn
          swift-cnn-train inspect --model conv16k3p1-bn-relu-maxpool2-fc --input 3x32x32
        """)

    @Argument(help: "A checkpoint file whose manifest to print.")
    var checkpoint: String?

    @Option(help: "A preset or a model spec.")
    var model = "seed-cnn"

    @Option(help: "Input shape CxHxW (or a feature count).")
    var input = "1x28x28"

    @Option(parsing: .unconditional, help: "Number of classes.")
    var classes = 10

    func run() throws {
        if let checkpoint {
            do {
                let (loaded, _) = try loadCheckpoint(path: checkpoint)
                let m = loaded.manifest
                print("checkpoint \(checkpoint): format \(loaded.fileVersion), verified (zstd and SHA-256 checksums)")
                print("step \(m.step) (epoch \(m.epoch + 1)); model \(m.model); input \(m.inputShape.map(String.init).joined(separator: "×")); \(m.classes) classes")
                print("hyperparameters: " + m.hyperparameters.settings.map { "\(Train.flag($0.name)) \($0.value)" }.joined(separator: ", "))
                print("payload: \(m.payloadFloats) floats, sha256 \(m.payloadSHA256), byte-shuffled \(m.byteShuffled)")
                print("parameter digest: \(parameterDigest(parameters: loaded.parameters, buffers: loaded.buffers))")
                for tensor in m.tensors {
                    print("  \(tensor.name.padding(toLength: 28, withPad: " ", startingAt: 0)) \(tensor.shape.map(String.init).joined(separator: "×").padding(toLength: 14, withPad: " ", startingAt: 0)) @ \(tensor.offset)")
                }
            } catch {
                FileHandle.standardError.write(Data("error: \(error)\n".utf8))
                throw ExitCode(1)
            }
            return
        }
        guard let shape = InputShape.parse(input) else {
            throw ValidationError("--input must look like 1x28x28 (got '\(input)')")
        }
        guard classes >= 2 && classes <= 256 else { throw ValidationError("--classes must be between 2 and 256") }
        do {
            let network = try Network(spec: try ModelSpec(model), inputShape: shape, classes: classes)
            print(modelTable(network))
        } catch let error as EngineError {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(64)
        }
    }
}

/// The layer table `inspect` prints: module, output shape, parameters, and the total.
func modelTable(_ network: Network) -> String {
    var rows = [("layer", "output shape", "parameters")]
    rows.append(("input", network.inputShape.map(String.init).joined(separator: "×"), ""))
    let counts = Dictionary(grouping: network.layout.parameters, by: { $0.name.split(separator: ".").first.map(String.init) ?? "" })
    var named = [String]()
    for tensor in network.layout.parameters {
        let owner = String(tensor.name.split(separator: ".").first ?? "")
        if named.last != owner { named.append(owner) }
    }
    var ownerIndex = 0
    for layer in network.layers {
        var params = ""
        var label = layer.description
        if layer is Conv2d || layer is Linear || layer is BatchNorm2d {
            let owner = named[ownerIndex]
            ownerIndex += 1
            params = (counts[owner] ?? []).reduce(0) { $0 + $1.count }.formatted()
            label = "\(owner): \(label)"
        }
        rows.append((label, layer.outputShape.map(String.init).joined(separator: "×"), params))
    }
    let w0 = rows.map(\.0.count).max()!, w1 = rows.map(\.1.count).max()!
    var lines = rows.map { r in
        r.0.padding(toLength: w0 + 2, withPad: " ", startingAt: 0) + r.1.padding(toLength: w1 + 2, withPad: " ", startingAt: 0) + r.2
    }
    lines.append("total parameters: \(network.parameterCount.formatted()) (\(network.parameterCount))")
    lines.append("loss: \(network.loss.rawValue); spec: \(network.spec.text)")
    return lines.joined(separator: "\n")
}
