from zoo.launch import console_main

console_main()
