import Foundation

/// Reads and verifies a checkpoint file, building the model its manifest names.
public func loadCheckpoint(path: String) throws -> (Checkpoint, Network) {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw EngineError.invalidCheckpoint("cannot read checkpoint '\(path)'")
    }
    return try loadCheckpoint(bytes: [UInt8](data), source: path)
}

/// Decodes and verifies checkpoint bytes (named `source` in errors), building the model its
/// manifest names.
public func loadCheckpoint(bytes: [UInt8], source path: String) throws -> (Checkpoint, Network) {
    let (manifest, _) = try Checkpoint.manifest(of: bytes, source: path)
    let network: Network
    do {
        network = try Network(spec: try ModelSpec(manifest.model), inputShape: manifest.inputShape, classes: manifest.classes,
                              initScheme: manifest.hyperparameters.initialization)
    } catch {
        throw EngineError.invalidCheckpoint("'\(path)' is not a usable checkpoint: its model cannot be built (\(error))")
    }
    guard Checkpoint.payloadFloats(layout: network.layout, optimizer: manifest.hyperparameters.optimizer)
            <= Checkpoint.maximumPayloadFloats else {
        throw EngineError.invalidCheckpoint("'\(path)' is not a usable checkpoint: its model has more than \(Checkpoint.maximumPayloadFloats) floats of state")
    }
    return (try Checkpoint.decode(bytes, source: path, layout: network.layout), network)
}
