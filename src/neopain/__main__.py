from neopain.cli.app import main

main()
