from uringsync.entry import main

main()
