import Engine
import Foundation

/// The value's four bytes, little-endian, as checkpoint headers store them.
public func littleEndian(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8((value >> (8 * $0)) & 0xFF) } }

/// A checkpoint file with its manifest JSON edited and the header's length and CRC rewritten
/// to match: a file that is damaged, or written by another version, in one chosen way.
public func editingManifest(_ bytes: [UInt8], _ edit: (inout [String: Any]) -> Void) throws -> [UInt8] {
    let (_, payloadStart) = try Checkpoint.manifest(of: bytes, source: "the checkpoint to edit")
    var json = try JSONSerialization.jsonObject(with: Data(bytes[20..<payloadStart])) as! [String: Any]
    edit(&json)
    let text = [UInt8](try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]))
    return Array(bytes[0..<12]) + littleEndian(UInt32(text.count)) + littleEndian(Checkpoint.crc32(text)) + text
        + Array(bytes[payloadStart...])
}

/// The file a format-2 build (SGD only) wrote for the same SGD state: version 2 in the header,
/// and none of the settings format 3 added in the manifest.
public func asFormat2(_ bytes: [UInt8]) throws -> [UInt8] {
    var edited = try editingManifest(bytes) { json in
        var hyperparameters = json["hyperparameters"] as! [String: Any]
        precondition((hyperparameters["optimizer"] as! [String: Any])["kind"] as? String == "sgd", "format 2 held only SGD runs")
        hyperparameters["clipGradNorm"] = nil
        hyperparameters["labelSmoothing"] = nil
        var optimizer = hyperparameters["optimizer"] as! [String: Any]
        for key in ["kind", "beta1", "beta2", "epsilon"] { optimizer[key] = nil }
        hyperparameters["optimizer"] = optimizer
        json["hyperparameters"] = hyperparameters
    }
    edited.replaceSubrange(8..<12, with: littleEndian(2))
    return edited
}
