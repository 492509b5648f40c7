from segmetro.cli import main

main()
