from uringsync.cli import main

main()
