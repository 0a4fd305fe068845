// The `mann` executable; everything lives in the cli module (app.h) so it can be tested.
#include "app.h"

int main(int argc, char** argv) { return mann::cli::Main(argc, argv); }
