from sender_cli.app import main

main()
