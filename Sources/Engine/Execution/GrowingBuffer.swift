/// Memory grown to the largest size asked for and then reused: no allocation per step. Its
/// contents are kept only until the next `storage(count:)` that has to grow it.
public final class GrowingBuffer<Element> {
    /// The memory as last sized (nil before the first request).
    public private(set) var pointer: UnsafeMutablePointer<Element>?
    private var capacity = 0

    public init() {}

    deinit { pointer?.deallocate() }

    /// At least `count` elements.
    public func storage(count: Int) -> UnsafeMutablePointer<Element> {
        if let pointer, capacity >= count { return pointer }
        pointer?.deallocate()
        capacity = max(count, 1)
        let grown = UnsafeMutablePointer<Element>.allocate(capacity: capacity)
        pointer = grown
        return grown
    }
}
