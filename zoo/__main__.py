from zoo.cli import console_main

console_main()
