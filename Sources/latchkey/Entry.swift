import ArgumentParser
import LatchkeyCLI

@main
enum Entry {
    static func main() async {
        await LatchkeyCommand.main()
    }
}
