from neopain.cli.main import main

main()
