from fiscobridge.cli import main

main()
