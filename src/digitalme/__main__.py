from digitalme.cli import main

main()
