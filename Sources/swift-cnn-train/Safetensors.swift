import Foundation

/// A file in the safetensors format (https://github.com/huggingface/safetensors):
///
///     header length N: UInt64 LE | header: N bytes of UTF-8 JSON, padded with spaces
///     | data: every tensor's little-endian bytes, back to back
///
/// The header maps each tensor's name to {"dtype", "shape", "data_offsets": [begin, end]}
/// (byte offsets into the data, which the tensors cover with no gaps) and "__metadata__" to
/// a string→string map. The header is padded so that the data starts 8-byte aligned, and
/// tensors with 8-byte elements come first, so every tensor is aligned to its element size.
/// The header lists tensors in the order given (PyTorch's `state_dict` order).
struct SafetensorsFile {
    struct Tensor {
        enum DType: String {
            case f32 = "F32"
            case i64 = "I64"
            var size: Int { self == .f32 ? 4 : 8 }
        }

        let name: String
        let dtype: DType
        let shape: [Int]
        /// Little-endian element bytes.
        let bytes: [UInt8]

        init(name: String, shape: [Int], floats: ArraySlice<Float>) {
            precondition(floats.count == shape.reduce(1, *), "\(name): \(floats.count) values for shape \(shape)")
            (self.name, dtype, self.shape) = (name, .f32, shape)
            var bytes = [UInt8]()
            bytes.reserveCapacity(4 * floats.count)
            for v in floats { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
            self.bytes = bytes
        }

        /// A 0-dimensional Int64 tensor, as PyTorch's `num_batches_tracked`.
        init(name: String, scalar: Int64) {
            (self.name, dtype, shape) = (name, .i64, [])
            bytes = withUnsafeBytes(of: scalar.littleEndian) { Array($0) }
        }
    }

    var tensors: [Tensor]
    var metadata: [String: String]

    func encoded() -> [UInt8] {
        // Data order: 8-byte elements first, then 4-byte; stable within each.
        let order = tensors.indices.sorted { (tensors[$0].dtype.size, -$0) > (tensors[$1].dtype.size, -$1) }
        var offsets = [(Int, Int)](repeating: (0, 0), count: tensors.count)
        var end = 0
        for i in order {
            offsets[i] = (end, end + tensors[i].bytes.count)
            end += tensors[i].bytes.count
        }
        var entries = ["\"__metadata__\":{" + metadata.sorted { $0.key < $1.key }
            .map { "\(jsonString($0.key)):\(jsonString($0.value))" }.joined(separator: ",") + "}"]
        for (i, t) in tensors.enumerated() {
            entries.append("\(jsonString(t.name)):{\"dtype\":\"\(t.dtype.rawValue)\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offsets[i].0),\(offsets[i].1)]}")
        }
        var header = Array(("{" + entries.joined(separator: ",") + "}").utf8)
        while (8 + header.count) % 8 != 0 { header.append(UInt8(ascii: " ")) }
        var bytes = withUnsafeBytes(of: UInt64(header.count).littleEndian) { Array($0) }
        bytes.reserveCapacity(8 + header.count + end)
        bytes += header
        for i in order { bytes += tensors[i].bytes }
        return bytes
    }
}

/// A JSON string literal: quotes, backslashes and control characters escaped.
func jsonString(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}
