from imacpro.cli import main

main()
