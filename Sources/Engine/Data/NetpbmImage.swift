import Foundation

/// A binary netpbm image: PGM (`P5`, grayscale, one channel) or PPM (`P6`, RGB, three
/// channels), 8 bits per sample (maxval 255). The header is the magic, width, height and
/// maxval separated by whitespace (`#` comments allowed), then exactly one whitespace byte,
/// then the raster. Pixels are kept planar, C×H×W, the layout the models take (a PPM's
/// interleaved RGB is split into an R, a G and a B plane, as CIFAR-10 stores them).
public struct NetpbmImage {
    public let channels: Int
    public let height: Int
    public let width: Int
    /// channels × height × width bytes, planar.
    public let pixels: [UInt8]

    public var shape: [Int] { [channels, height, width] }

    public static func load(path: String) throws -> NetpbmImage {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw EngineError.invalidData("cannot read image '\(path)'")
        }
        return try NetpbmImage(bytes: [UInt8](data), source: path)
    }

    public init(bytes: [UInt8], source: String) throws {
        func bad(_ why: String) -> EngineError { .invalidData("image '\(source)' \(why)") }
        guard bytes.count >= 2, bytes[0] == UInt8(ascii: "P") else {
            throw bad("is not a PGM or PPM file (it does not start with P5 or P6)")
        }
        switch bytes[1] {
        case UInt8(ascii: "5"): channels = 1
        case UInt8(ascii: "6"): channels = 3
        case UInt8(ascii: "2"), UInt8(ascii: "3"):
            throw bad("is an ASCII (P2/P3) netpbm file; save it as binary PGM (P5) or PPM (P6)")
        default:
            throw bad("is not a binary PGM (P5) or PPM (P6) file")
        }
        var position = 2
        func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D || b == 0x0B || b == 0x0C }
        /// The next header number, skipping whitespace and comments.
        func number(_ name: String) throws -> Int {
            while position < bytes.count {
                if isSpace(bytes[position]) {
                    position += 1
                } else if bytes[position] == UInt8(ascii: "#") {
                    while position < bytes.count && bytes[position] != 0x0A && bytes[position] != 0x0D { position += 1 }
                } else {
                    break
                }
            }
            guard position < bytes.count, isSpace(bytes[position - 1]) else {
                throw bad("has a truncated or malformed header (reading its \(name))")
            }
            var value = 0, digits = 0
            while position < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[position]) {
                value = value * 10 + Int(bytes[position] - UInt8(ascii: "0"))
                digits += 1
                position += 1
                guard digits <= 6 else { throw bad("has a \(name) with more than 6 digits") }
            }
            guard digits > 0 else { throw bad("has a malformed header: its \(name) is not a number") }
            return value
        }
        width = try number("width")
        height = try number("height")
        let maxval = try number("maxval")
        guard (1...65536).contains(width), (1...65536).contains(height) else {
            throw bad("has size \(width)×\(height); width and height must be 1…65536")
        }
        guard maxval == 255 else {
            throw bad("has maxval \(maxval); only 8-bit images with maxval 255 are read (inputs are scaled x/255)")
        }
        guard position < bytes.count, isSpace(bytes[position]) else {
            throw bad("has a malformed header: no whitespace after the maxval")
        }
        position += 1
        let size = channels * width * height
        let raster = bytes.count - position
        guard raster >= size else {
            throw bad("is truncated: \(raster) bytes of pixels, a \(width)×\(height) \(channels == 1 ? "PGM" : "PPM") needs \(size)")
        }
        guard raster == size else {
            throw bad("has \(raster - size) bytes after its pixels (one image per file)")
        }
        var planar = [UInt8](repeating: 0, count: size)
        let plane = width * height
        for i in 0..<plane {
            for c in 0..<channels { planar[c * plane + i] = bytes[position + i * channels + c] }
        }
        pixels = planar
    }

    /// Writes the pixels as inputs: x/255, normalised by `normalization` if given (the
    /// scaling training uses, `Dataset.scale`).
    public func scale(into destination: UnsafeMutablePointer<Float>, normalization: InputNormalization? = nil) {
        let values = InputNormalization.values(normalization, channels: channels)
        InputNormalization.apply(values, to: pixels, count: pixels.count, channels: channels, into: destination)
    }

    /// What a file the model accepts looks like, for errors: "a 28×28 PGM".
    public static func describe(shape: [Int]) -> String {
        guard shape.count == 3, shape[0] == 1 || shape[0] == 3 else {
            return "none: the model's input \(shape.map(String.init).joined(separator: "×")) is not a 1- or 3-channel image"
        }
        return "a \(shape[2])×\(shape[1]) \(shape[0] == 1 ? "PGM (P5)" : "PPM (P6)")"
    }
}
